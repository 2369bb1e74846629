"""What a worker needs to rebuild the pipeline it serves, and the per-process build.

Pipelines are rarely picklable (torch modules with hooks, open sessions, lambdas), so a
worker (a Ray actor, a Ray Data task, a spawned local process) never receives one: it
receives a :class:`JobSpec` — the TARGET as an importable factory, the recipe and its
artifacts — and builds the pipeline itself, once per process, exactly as production
start-up does (``load_recipe``: no re-tuning). The build checks that it produced the
stages the driver planned for.

Stages whose components are small plain objects can instead be *shipped*: pickled once in
the driver (with ``cloudpickle``, the target module's functions by value) and unpickled
once per worker process (:func:`ship_stages`, :func:`shipped_stages`). That is what lets
cheap stages run as stateless Ray Data tasks without loading the models of the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage

#: The environment variable a spawned local worker reads its JobSpec from.
JOB_ENV = "PIPETUNE_SCALE_JOB"
#: The factory that builds the pipeline from :data:`JOB_ENV` (local process executor).
ENV_FACTORY = "pipetune.scale.job:pipeline_from_environment"
#: Shipped stages above this many pickled bytes run in actors instead (built once each).
SHIP_LIMIT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class JobSpec:
    """How to rebuild the pipeline in a worker.

    Args:
        factory: ``/abs/path/file.py:attr`` or ``package.module:attr`` (a Pipeline or a
            function returning one), importable on every node.
        pipeline: the pipeline's name, and ``stages`` its stage names after the recipe:
            what the worker must build.
        recipe, artifacts: the recipe file and its artifacts folder (absolute paths).
        sys_path: folders put first on ``sys.path`` before importing the factory.
        disabled_plugins: plugins to leave out when the recipe is applied.
        threads: torch/OpenMP/BLAS threads per worker process.
        item_timeout_s: the per-input deadline in the workers (``None``: none).
    """

    factory: str
    pipeline: str
    stages: tuple[str, ...]
    recipe: str | None = None
    artifacts: str | None = None
    sys_path: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    threads: int = 1
    item_timeout_s: float | None = None
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        data["stages"] = tuple(data["stages"])
        data["sys_path"] = tuple(data["sys_path"])
        data["disabled_plugins"] = tuple(data["disabled_plugins"])
        data["env"] = tuple(tuple(pair) for pair in data.get("env", ()))
        return cls(**data)

    @property
    def factory_file(self) -> str | None:
        """The factory's Python file, when it is one (workers cannot import it by name)."""
        location = self.factory.rpartition(":")[0]
        return location if location.endswith(".py") or "/" in location else None

    def with_threads(self, threads: int) -> JobSpec:
        from dataclasses import replace

        return replace(self, threads=max(1, int(threads)))


_BUILT: dict[str, Pipeline] = {}
_BUILD_LOCK = threading.Lock()


def build_pipeline(job: JobSpec) -> Pipeline:
    """The pipeline ``job`` describes, in a worker: the process is prepared (its folders
    on ``sys.path``, its threads pinned to ``job.threads``) and the pipeline built once
    (later calls reuse it)."""
    key = job.to_json()
    with _BUILD_LOCK:
        found = _BUILT.get(key)
        if found is not None:
            return found
        prepare_process(job.sys_path, job.threads, job.env)
        pipeline = load_pipeline(job)
        from pipetune.core.runtime import threads as _threads

        _threads.reapply()  # torch was probably imported by the build: give it the pin
        _BUILT[key] = pipeline
        return pipeline


def load_pipeline(job: JobSpec) -> Pipeline:
    """The pipeline ``job`` describes, built now, touching no process-wide setting (for a
    driver, which keeps its own threads)."""
    from pipetune.core.runtime.processes import resolve_factory

    pipeline = resolve_factory(job.factory)
    if job.recipe:
        from pipetune.core.kernel.manager import get_plugin_manager
        from pipetune.core.loop.recipes import load_recipe

        pm = get_plugin_manager(disable=list(job.disabled_plugins))
        pipeline = load_recipe(pipeline, job.recipe, pm=pm, artifacts_dir=job.artifacts)
    if pipeline.stage_names != job.stages:
        raise ConfigError(
            f"{job.factory} built stages {list(pipeline.stage_names)} in a worker, but the "
            f"driver planned for {list(job.stages)}: the TARGET must build the same "
            "pipeline on every node"
        )
    return pipeline


def pipeline_from_environment() -> Pipeline:
    """The local process executor's factory: the JobSpec is in ``$PIPETUNE_SCALE_JOB``."""
    text = os.environ.get(JOB_ENV)
    if not text:
        raise ConfigError(f"{JOB_ENV} is not set: this factory runs in pipetune's own workers")
    return build_pipeline(JobSpec.from_json(text))


_PREPARED = False


def prepare_process(
    sys_path: Sequence[str] = (), threads: int = 1, env: Sequence[tuple[str, str]] = ()
) -> None:
    """Put the job's folders on ``sys.path`` and pin this process's threads (once): each
    worker gets its share of the cores, never the whole machine."""
    global _PREPARED
    for folder in reversed(list(sys_path)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if _PREPARED:
        return
    for name, value in env:
        os.environ.setdefault(name, value)
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # Rust tokenizers' pool
    from pipetune.core.runtime import threads as _threads

    _threads.pin_for_process(threads)  # for the life of the worker process
    _PREPARED = True


# -- shipping cheap stages ---------------------------------------------------------------------


@dataclass(frozen=True)
class _StageParts:
    name: str
    fn: Any
    kind: str
    slots: dict[str, Any]
    batch_fn: Any
    output_kind: str | None
    meta: dict[str, Any]


def ship_stages(stages: Sequence[Stage], local_files: Sequence[str] = ()) -> bytes | None:
    """``stages`` pickled for shipping to workers, or ``None`` when they cannot be (an
    unpicklable component) or should not be (over :data:`SHIP_LIMIT_BYTES`: a model is
    built once per actor instead).

    Functions and classes from modules a worker could not import by name (a TARGET loaded
    from a file, ``local_files``) are pickled by value, so a worker never re-executes the
    TARGET file (and never loads its models) to run a cheap stage."""
    if any(_too_big(value) for stage in stages for value in stage.slots.values()):
        return None
    pickler = _cloudpickle()
    parts = [
        _StageParts(s.name, s.fn, s.kind, dict(s.slots), s.batch_fn, s.output_kind, dict(s.meta))
        for s in stages
    ]
    registered = []
    if hasattr(pickler, "register_pickle_by_value"):
        for module in _local_modules(stages, local_files):
            with contextlib.suppress(Exception):
                pickler.register_pickle_by_value(module)
                registered.append(module)
    try:
        blob = pickler.dumps(parts)
    except Exception:
        return None
    finally:
        for module in registered:
            with contextlib.suppress(Exception):
                pickler.unregister_pickle_by_value(module)
    return blob if len(blob) <= SHIP_LIMIT_BYTES else None


def _too_big(value: Any) -> bool:
    """A component known to be over the limit without pickling it (a torch module's
    parameters, an array's buffer): a model is not pickled just to find out."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes > SHIP_LIMIT_BYTES
    parameters = getattr(value, "parameters", None)
    if callable(parameters) and type(value).__module__.startswith("torch"):
        with contextlib.suppress(Exception):
            size = sum(p.numel() * p.element_size() for p in parameters())
            return size > SHIP_LIMIT_BYTES
    return False


def _local_modules(stages: Sequence[Stage], local_files: Sequence[str]) -> list[Any]:
    """Modules of the stages' functions and components that workers cannot import by name."""
    import importlib.util
    from pathlib import Path

    files = {str(Path(f).resolve()) for f in local_files}
    objects: list[Any] = []
    for stage in stages:
        objects += [stage.fn, stage.batch_fn, *(type(v) for v in stage.slots.values())]
    found: dict[str, Any] = {}
    for obj in objects:
        name = getattr(obj, "__module__", None)
        module = sys.modules.get(name or "")
        if module is None or name in found or name == "__main__":
            continue
        origin = getattr(module, "__file__", None)
        try:
            importable = importlib.util.find_spec(name) is not None  # type: ignore[arg-type]
        except (ImportError, ValueError):
            importable = False
        if not importable or (origin and str(Path(origin).resolve()) in files):
            found[name] = module  # type: ignore[index]
    return list(found.values())


_SHIPPED: dict[str, tuple[Stage, ...]] = {}


def shipped_stages(
    blob: bytes, sys_path: Sequence[str] = (), threads: int = 1
) -> tuple[Stage, ...]:
    """The stages in ``blob``, unpickled once per process."""
    digest = hashlib.sha1(blob).hexdigest()
    found = _SHIPPED.get(digest)
    if found is not None:
        return found
    prepare_process(sys_path, threads)
    parts = _cloudpickle().loads(blob)
    stages = tuple(
        Stage(p.name, p.fn, p.kind, p.slots, p.batch_fn, p.output_kind, p.meta) for p in parts
    )
    _SHIPPED[digest] = stages
    return stages


def _cloudpickle() -> Any:
    try:
        from ray import cloudpickle

        return cloudpickle
    except ImportError:
        try:
            import cloudpickle  # type: ignore[import-not-found, no-redef]

            return cloudpickle
        except ImportError:
            import pickle

            return pickle
