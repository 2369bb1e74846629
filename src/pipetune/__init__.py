"""pipetune: profile an AI pipeline, propose the changes with the biggest end-to-end gain,
apply them, and prove each one on the same workload before keeping it.

The public API. Heavy libraries (torch, faiss, OpenCV...) are imported only by the plugins
that need them, inside the functions that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetune._version import __version__
from pipetune.core.kernel.errors import (
    ConfigError,
    MissingDependency,
    ParamsError,
    PipelineError,
    PipetuneError,
    PluginError,
    Rejected,
    StageError,
)
from pipetune.core.kernel.hookspecs import API_VERSION, hookimpl
from pipetune.core.kernel.manager import BUILTIN_PLUGINS, get_plugin_manager
from pipetune.core.kernel.model import Growth, Pipeline, Requirements, Stage, Trace, Workload
from pipetune.core.kernel.params import ChangeParams, NoParams
from pipetune.core.kernel.registry import (
    Availability,
    Backend,
    ChangeType,
    Demo,
    DemoSetup,
    Dependency,
    OutputKind,
    ThreadPool,
    require,
)
from pipetune.core.kernel.results import (
    Change,
    Fidelity,
    Profile,
    Proposal,
    Recipe,
    Trial,
    Tuned,
)

if TYPE_CHECKING:  # imported when called: the loop pulls in the measurement stack
    from pipetune.core.loop.optimize import Optimized


def profile(pipeline: Pipeline, workload: Workload, **options: Any) -> Profile:
    """Profile ``pipeline`` on ``workload``. See :func:`pipetune.core.measure.profiler.profile`."""
    from pipetune.core.measure.profiler import profile as _profile

    return _profile(pipeline, workload, **options)


def optimize(
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements | None = None,
    **options: Any,
) -> Optimized:
    """Run the optimize loop; returns the optimized pipeline and the report as an
    :class:`~pipetune.core.loop.optimize.Optimized` (``pipeline, report = optimize(...)``;
    ``report`` is a :class:`~pipetune.core.report.model.Report`). See
    :func:`pipetune.core.loop.optimize.optimize`."""
    from pipetune.core.loop.optimize import optimize as _optimize

    return _optimize(pipeline, workload, requirements or Requirements(), **options)


def load_recipe(pipeline: Pipeline, recipe: Recipe | str | Any, **options: Any) -> Pipeline:
    """Re-apply a saved recipe to ``pipeline`` at production start-up (no re-tuning, no
    rebuilding). See :func:`pipetune.core.loop.recipes.load_recipe`."""
    from pipetune.core.loop.recipes import load_recipe as _load_recipe

    return _load_recipe(pipeline, recipe, **options)


__all__ = [
    "API_VERSION",
    "BUILTIN_PLUGINS",
    "Availability",
    "Backend",
    "Change",
    "ChangeParams",
    "ChangeType",
    "ConfigError",
    "Demo",
    "DemoSetup",
    "Dependency",
    "Fidelity",
    "Growth",
    "MissingDependency",
    "NoParams",
    "OutputKind",
    "ParamsError",
    "Pipeline",
    "PipelineError",
    "PipetuneError",
    "PluginError",
    "Profile",
    "Proposal",
    "Recipe",
    "Rejected",
    "Requirements",
    "Stage",
    "StageError",
    "ThreadPool",
    "Trace",
    "Trial",
    "Tuned",
    "Workload",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "load_recipe",
    "optimize",
    "profile",
    "require",
]
