"""Small typed records that plugins register: optional dependencies, backends, demos,
change types, output kinds and thread pools.

They are registered through hooks (``register_dependencies``, ``register_backends``,
``register_demos``, ``register_changes``, ``register_output_kinds``,
``register_thread_pools``) and merged by the manager, which refuses duplicates by name,
naming both plugins.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import install_command

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.kernel.results import Change, Fidelity, Proposal, Tuned


@dataclass(frozen=True)
class Availability:
    """Whether something can be used here; when not, why and how to install it."""

    ok: bool
    reason: str = ""
    install: str | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Dependency:
    """An optional dependency a plugin uses. Checked without importing it."""

    module: str
    extra: str | None = None
    purpose: str = ""
    distribution: str | None = None  # the PyPI name, when it differs from the module

    def check(self) -> Availability:
        try:
            found = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return Availability(True)
        return Availability(
            False,
            reason=f"{self.module} is not installed",
            install=install_command(self.distribution or self.module, self.extra),
        )


def require(module: str, extra: str | None = None, purpose: str = "") -> Any:
    """Import an optional dependency or raise :class:`MissingDependency` with the install
    command. Plugins call this inside the functions that need the module."""
    from pipetune.core.kernel.errors import MissingDependency

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(module, extra, purpose) from None


class Backend(ABC):
    """A hardware backend: compiles a model for a target (``register_backends``).

    Subclasses set ``name`` (unique across plugins), ``target`` (``cpu``, ``nvidia``,
    ``apple``) and ``precisions`` (``fp32``, ``fp16``, ``bf16``, ``int8``).
    """

    name: str = ""
    target: str = "cpu"
    precisions: tuple[str, ...] = ("fp32",)
    #: False when this machine cannot confirm a speedup (TensorRT here): never claimed.
    verified: bool = True

    @abstractmethod
    def available(self) -> Availability:
        """Whether the backend can run here; when not, the reason and the install command.
        A backend that would silently fall back (a missing GPU provider) says so here."""

    @abstractmethod
    def compile(
        self,
        model: Any,
        example_inputs: Sequence[Any] | Mapping[str, Any],
        precision: str = "fp32",
        **options: Any,
    ) -> Any:
        """Compile ``model`` for this backend; return a callable with the model's calling
        convention and output structure."""


@dataclass(frozen=True)
class DemoSetup:
    """A reference pipeline ready to profile or optimize."""

    pipeline: Any  # Pipeline
    workload: Any  # Workload
    requirements: Any  # Requirements
    description: str = ""
    notes: Mapping[str, Any] = field(default_factory=dict)
    #: The baseline pipeline's outputs, one per workload input, when the demo's set-up has
    #: them cached (a slow baseline over a large fidelity set); the loop then measures
    #: fidelity against them instead of re-running the baseline.
    baseline_outputs: Sequence[Any] | None = None
    #: How a fresh process builds ``pipeline`` again (``package.module:attr``, a function
    #: taking no arguments): the loop's final re-measurement then runs there, as a user's
    #: script that loads the recipe would. ``None``: it runs in the loop's process.
    factory: str | None = None


@dataclass(frozen=True)
class Demo:
    """A built-in reference pipeline, run by ``pipetune demo NAME``.

    ``build(quick)`` returns a :class:`DemoSetup`; ``quick=True`` builds a small version
    for tests. ``default=True`` marks the demo ``pipetune demo`` runs with no name.
    """

    name: str
    title: str
    build: Callable[[bool], DemoSetup]
    default: bool = False
    requires: tuple[Dependency, ...] = ()


#: ``tune(proposal, pipeline, context)``: search the proposal's parameters on the tuning
#: split (``context.workload``) and build its artifacts; ``None`` keeps the proposal's own.
Tune = Callable[["Proposal", "Pipeline", "TuneContext"], "Tuned | None"]
#: ``materialize(change, pipeline, artifacts_dir)``: a *new* pipeline with the change
#: applied, from its parameters and saved artifacts alone (no search, no rebuild).
Materialize = Callable[["Change", "Pipeline", Path], "Pipeline"]
#: ``migrate(params) -> params``: one schema version step (version N to N + 1).
Migration = Callable[[dict[str, Any]], Mapping[str, Any]]
#: ``compare(baseline, candidate, labels)``: the fidelity of candidate outputs.
Compare = Callable[[Sequence[Any], Sequence[Any], "Sequence[Any] | None"], "Fidelity"]


@dataclass(frozen=True)
class ChangeType:
    """One kind of change a plugin makes (``register_changes``); the host dispatches tune
    and materialize to it by ``id``.

    Args:
        id: ``<plugin>.<change>``, the id of the proposals it serves (``vision.reduced_decode``);
            unique across plugins.
        params: the parameters' schema, a frozen dataclass (subclass
            :class:`~pipetune.core.kernel.params.ChangeParams`); a change's params are checked
            against it when the change is made and when a recipe re-applies it.
        materialize: builds the changed pipeline (see :data:`Materialize`).
        tune: searches the parameters on the tuning split (see :data:`Tune`); ``None``
            when the proposal's own parameters are final.
        lossy: the change may alter outputs (reduced precision, skipped frames, an
            approximate index): it is kept only behind a fidelity gate.
        version: the params schema version, recorded with each change in a recipe.
        migrations: ``{N: migrate}`` brings params from version N to N + 1, so a recipe
            saved under an older version still loads.
        owner: the plugin that registered it (set by the host).
    """

    id: str
    params: type
    materialize: Materialize
    tune: Tune | None = None
    lossy: bool = False
    version: int = 1
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    owner: str = ""


@dataclass(frozen=True)
class ThreadPool:
    """A library's thread pool that pipetune pins, records and sets per stage
    (``register_thread_pools``).

    Args:
        name: the library (``faiss``); unique across plugins and the built-in ``torch`` pool.
        module: the module whose presence in ``sys.modules`` means the library is loaded;
            ``get`` and ``set`` are called only then (the host never imports it).
        get: ``get() -> int``: the pool's thread count now.
        set: ``set(count)``: change it.
        per_call: ``True`` when the count may be set around each call and restored after
            (faiss's ``omp_set_num_threads``): a thread plan then sets it per stage; ``False``
            when it can only be set for the process.
        description: one line for the docs and the report.
        owner: the plugin that registered it (set by the host).
    """

    name: str
    module: str
    get: Callable[[], int]
    set: Callable[[int], None]
    per_call: bool = True
    description: str = ""
    owner: str = ""

    def loaded(self) -> bool:
        """Whether the library is imported in this process (never imports it)."""
        import sys

        return self.module in sys.modules


@dataclass(frozen=True)
class OutputKind:
    """How outputs of one kind are compared (``register_output_kinds``).

    Args:
        name: the kind a pipeline declares in ``output_kind`` (``labels``,
            ``ranked_ids``); unique across plugins.
        metric: the name of the metric ``compare`` reports (``label_agreement``).
        compare: ``(baseline, candidate, labels) -> Fidelity`` with a higher-is-better
            ``value``; accuracy against ``labels`` goes in ``details`` when given. It may
            set ``threshold`` to demand more than the user's budget, never less.
        description: one line for ``pipetune plugins``.
        owner: the plugin that registered it (set by the host).
    """

    name: str
    metric: str
    compare: Compare
    description: str = ""
    owner: str = ""
