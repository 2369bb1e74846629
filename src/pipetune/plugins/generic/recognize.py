"""What the generic plugin recognizes in a stage's declaration (a ``batch_fn``, a
component that accepts a batch, a ``factory`` to rebuild it in worker processes), and the
hints for what is missing."""

from __future__ import annotations

from pipetune.core.kernel.model import Stage
from pipetune.plugins.generic import parallel
from pipetune.plugins.generic.coalesce import batchable_slots


def hints_for(stage: Stage) -> list[str]:
    hints = []
    if (
        stage.batch_fn is None
        and stage.kind in ("inference", "ranking", "features")
        and not batchable_slots(stage)  # its model calls can be batched across inputs
    ):
        hints.append(
            f"stage {stage.name!r}: declare a batch_fn(items, ...) to unlock dynamic batching"
        )
    if stage.kind in ("preprocess", "decode", "tokenize") and not stage.meta.get(
        parallel.FACTORY_KEY
    ):
        hints.append(
            f"stage {stage.name!r}: declare meta={{'factory': 'package.module:function'}} "
            "(a function building this stage) so pipetune can run it in worker processes"
        )
    return hints
