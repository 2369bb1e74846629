"""Small typed records that plugins register: optional dependencies, backends, demos.

They are registered through hooks (``register_dependencies``, ``register_backends``,
``register_demos``) and merged by the manager, which refuses duplicates by name.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.errors import install_command


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
    """A hardware backend: compiles a model for a target (DESIGN §3, ``register_backends``).

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
