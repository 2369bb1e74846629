"""The pipetune hook specifications: the whole plugin API, in one module.

A plugin is a module (or object) of functions decorated with ``pipetune.hookimpl`` whose
names match the hooks below. An implementation takes only the arguments it needs, by name;
hooks may gain arguments in later API versions without breaking existing plugins.

Call semantics, stated per hook:

* *every plugin*: each implementation is called and its non-``None`` results are
  collected. The host calls implementations one at a time, so a plugin that raises is
  reported by name and the others still run.
* *first result*: implementations are called until one returns non-``None``.
* *owner only*: called only on the plugin that made the proposal (``proposal.plugin``),
  never on whoever answers first.

Return ``None`` to abstain. Returned records are the frozen dataclasses of
``pipetune.core.kernel.results`` and ``pipetune.core.kernel.registry``.

Changes and output kinds are registered, not answered: ``register_changes`` returns each
change type (its id, typed params, tune and materialize, whether it is lossy) and the host
dispatches by id (:mod:`pipetune.core.kernel.dispatch`); ``register_output_kinds`` returns
each output kind's comparison, with exactly one owner per kind. ``tune_proposal``,
``materialize_change`` and ``compare_outputs`` remain for plugins written against API 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import ast
    from pathlib import Path

    import click

    from pipetune.core.kernel.context import Observations, TuneContext
    from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
    from pipetune.core.kernel.registry import Backend, ChangeType, Demo, Dependency, OutputKind
    from pipetune.core.kernel.results import Change, Fidelity, Profile, Proposal, Tuned
    from pipetune.scan.rules import Finding, Rule

PROJECT_NAME = "pipetune"
#: The plugin API version. A plugin may declare ``PIPETUNE_API = N`` at module level; the
#: host refuses a plugin built against a newer API than this, with a clear message.
#: API 2 added ``register_changes`` and ``register_output_kinds``.
API_VERSION = 2

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- discovery ---------------------------------------------------------------------------


@hookspec
def register_dependencies() -> Sequence[Dependency] | None:
    """The optional dependencies this plugin uses.

    Called on every plugin, at ``pipetune plugins`` and when a proposal needs one. Return
    :class:`~pipetune.core.kernel.registry.Dependency` records; they are checked with
    ``importlib.util.find_spec`` (never imported), and a missing one is listed with the
    install command.
    """


@hookspec
def register_backends() -> Sequence[Backend] | None:
    """Hardware backends this plugin provides.

    Called on every plugin; returns :class:`~pipetune.core.kernel.registry.Backend` instances.
    Backend names are unique across plugins: a duplicate raises ``DuplicateError`` naming
    both plugins.
    """


@hookspec
def register_demos() -> Sequence[Demo] | None:
    """Reference pipelines for ``pipetune demo NAME``.

    Called on every plugin; returns :class:`~pipetune.core.kernel.registry.Demo` records. Names
    are unique; exactly one demo across all plugins may set ``default=True``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``pipetune`` CLI.

    Called on every plugin when the CLI is built (never at import time). Use
    ``@cli.command()`` on a function defined inside the hook.
    """


@hookspec
def register_changes() -> Sequence[ChangeType] | None:
    """The change types this plugin makes.

    Called on every plugin; returns :class:`~pipetune.core.kernel.registry.ChangeType`
    records. Ids read ``<plugin>.<change>`` and are unique across plugins: a duplicate
    raises ``DuplicateError`` naming both plugins. The host dispatches a proposal's tune
    and a change's materialize to the change type with its id, checks the params against
    the type's schema, records the schema version in recipes, and keeps a ``lossy``
    change only behind a fidelity gate.
    """


@hookspec
def register_output_kinds() -> Sequence[OutputKind] | None:
    """The output kinds this plugin compares.

    Called on every plugin; returns :class:`~pipetune.core.kernel.registry.OutputKind`
    records (a name, the metric, the comparison). Each kind has one owner: a second
    registration raises ``DuplicateError`` naming both plugins.
    """


# -- profile -----------------------------------------------------------------------------


@hookspec
def inspect_pipeline(pipeline: Pipeline) -> Mapping[str, Any] | None:
    """Facts known without running the pipeline (catalog size, tokenizer kind, input
    resolution), as a JSON-serializable mapping.

    Called on every plugin before profiling; results are stored in ``Profile.facts`` under
    the plugin's name (merged with what ``profile_pipeline`` returns).
    """


@hookspec
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    """Hints for a stage this plugin could optimize if it were declared more fully.

    Called on every plugin for every stage. Example: an opaque stage of kind
    ``tokenize`` gets "declare its `tokenizer` slot to unlock the Rust tokenizer swap".
    Return sentences, or ``None``.
    """


@hookspec
def profile_pipeline(
    pipeline: Pipeline,
    workload: Workload,
    profile: Profile,
    observed: Observations,
) -> Mapping[str, Any] | None:
    """Domain measurements added to the profile (sequence-length histogram, padding waste,
    frame redundancy, tokens/s), as a JSON-serializable mapping.

    Called on every plugin after the shared timing run. ``profile`` holds the timings;
    ``observed`` holds a bounded sample of each stage's inputs and outputs from that run,
    so plugins do not re-run the workload to see what flows between stages. A plugin may
    still time a stage in isolation when a fact needs it (model time against sequence
    length). The result is stored in ``Profile.facts[plugin_name]``.
    """


# -- propose -----------------------------------------------------------------------------


@hookspec
def propose_changes(
    pipeline: Pipeline,
    profile: Profile,
    requirements: Requirements,
) -> Sequence[Proposal] | None:
    """Changes this plugin proposes, with the evidence from the profile.

    Called on every plugin. Each :class:`~pipetune.core.kernel.results.Proposal` names its stage,
    an estimated stage speedup, effort and accuracy risk. A proposal whose dependency or
    hardware is missing is still returned, with ``status="unavailable"``, the reason and
    the install command. Proposal ids are ``<plugin>.<change>``; the same id proposed by
    two plugins raises ``DuplicateError`` naming both.
    """


# -- apply: tune, then materialize -------------------------------------------------------


@hookspec(firstresult=True)
def tune_proposal(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
) -> Tuned | None:
    """Deprecated since API 2 (register a ``ChangeType`` with a ``tune`` instead): search
    the proposal's parameters on the tuning split and build its artifacts (an index).

    Owner only, and only for a proposal id no plugin registers with ``register_changes``.
    ``workload`` is the tuning split; ``context`` runs pipelines, compares outputs and
    stores artifacts. Return :class:`~pipetune.core.kernel.results.Tuned`; raise
    :class:`~pipetune.core.kernel.errors.Rejected` when the change must not be applied.
    """


@hookspec(firstresult=True)
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    """Deprecated since API 2 (register a ``ChangeType`` with a ``materialize`` instead):
    build the transformed pipeline from a change's parameters and artifacts.

    Owner only, and only for a change id no plugin registers with ``register_changes``.
    Deterministic, with no search; must return a *new* pipeline and never mutate
    ``pipeline`` or the objects in its slots.
    """


# -- validate ----------------------------------------------------------------------------


@hookspec(firstresult=True)
def compare_outputs(
    output_kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None,
) -> Fidelity | None:
    """Deprecated since API 2 (register an ``OutputKind`` instead): fidelity of candidate
    outputs against the baseline's, for one output kind.

    First result, and only for a kind no plugin registers with ``register_output_kinds``.
    ``value`` is higher-is-better; accuracy against ``labels`` goes in ``details``. The
    validator sets the threshold (a plugin's own threshold may only raise it).
    """


@hookspec(firstresult=True)
def assess_change(
    change: Change,
    baseline: Pipeline,
    candidate: Pipeline,
    workload: Workload,
) -> Fidelity | None:
    """A domain-specific fidelity for a lossy change, when output comparison is not the
    right measure (perplexity change on held-out text for quantized LLM weights).

    First result; ``None`` falls back to comparing the pipelines' outputs by their output
    kind. This is how a domain plugin supplies the fidelity metric for a transformation
    another plugin owns (the llm plugin's perplexity for the hardware plugin's int8
    weights). The threshold is the user's budget; a threshold set here may raise it,
    never lower it.
    """


@hookspec(firstresult=True)
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    """Representative inputs for calibrating a lossy transformation of ``stage`` (static
    int8 quantization), in the form the stage's model receives.

    First result: the domain plugin that recognizes the stage answers. ``workload`` is the
    loop's calibration split (``TuneContext.calibration``), never an evaluation split.
    """


# -- scan --------------------------------------------------------------------------------


@hookspec
def scan_rules() -> Sequence[Rule] | None:
    """Static rules for ``pipetune scan``, each registered for the AST node types it
    inspects, so that a file is parsed once and walked once.

    Called on every plugin once per scan. Rule ids are unique across plugins.
    """


@hookspec
def scan_file(path: Path, tree: ast.Module, source: str) -> Sequence[Finding] | None:
    """Whole-file findings that a per-node rule cannot express.

    Called on every plugin for every scanned file. ``tree`` is already parsed: never
    import or run the scanned code. A plugin that raises is reported by name and the scan
    goes on.
    """
