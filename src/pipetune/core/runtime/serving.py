"""How a pipeline wants to be served: batch size, batching delay, workers.

Some changes are not a new stage but a new way of *serving* the same stages: dynamic
batching (gather up to ``batch_size`` requests, waiting at most ``max_delay_ms``, and run
them through each stage's ``batch_fn`` in one call). Such a change materializes as a
pipeline whose ``meta["serving"]`` says so; the runtime (profiler, validator, production
start-up through ``load_recipe``) reads it from here, so a recipe carries the serving
settings with the stages and nothing is configured twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import ConfigError

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Pipeline

SERVING_KEY = "serving"


@dataclass(frozen=True)
class ServingOptions:
    """Serving settings a pipeline carries in ``meta["serving"]``.

    Args:
        batch_size: the most inputs run together (offline: the chunk size; online: the
            dynamic batcher's maximum batch). 1 means no batching.
        max_delay_ms: online only: how long the batcher may hold the first request of a
            batch waiting for more.
    """

    batch_size: int = 1
    max_delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(
                f"serving batch_size must be an integer >= 1, not {self.batch_size!r}"
            )
        if not self.max_delay_ms >= 0:
            raise ConfigError(f"serving max_delay_ms must be >= 0, not {self.max_delay_ms!r}")

    @classmethod
    def of(cls, pipeline: Pipeline) -> ServingOptions:
        data = pipeline.meta.get(SERVING_KEY) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"pipeline {pipeline.name!r}: meta['serving'] must be a mapping")
        known = {k: data[k] for k in ("batch_size", "max_delay_ms") if k in data}
        return cls(
            batch_size=int(known.get("batch_size", 1)),
            max_delay_ms=float(known.get("max_delay_ms", 0.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_serving(pipeline: Pipeline, **options: Any) -> Pipeline:
    """A copy of ``pipeline`` with serving options set (the original is untouched)."""
    current = ServingOptions.of(pipeline).to_dict()
    merged = ServingOptions(**{**current, **options})
    return pipeline.evolve(meta={**pipeline.meta, SERVING_KEY: merged.to_dict()})
