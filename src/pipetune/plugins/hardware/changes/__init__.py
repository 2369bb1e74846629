"""The hardware plugin's change types, one module each (its id, tune and materialize);
they share one params schema and one materialize (:mod:`.common`) and the tune engine of
:mod:`pipetune.plugins.hardware.tune`. :func:`change_types` is what ``register_changes``
returns. (``hardware.instance`` is advice, not a change type.)"""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType


def change_types() -> list[ChangeType]:
    from pipetune.plugins.hardware.changes import compile as compile_
    from pipetune.plugins.hardware.changes import coreml, precision, tensorrt, threads

    return [compile_.CHANGE, precision.CHANGE, threads.CHANGE, coreml.CHANGE, tensorrt.CHANGE]
