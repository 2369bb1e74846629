"""What the hardware plugin's change types share: one params schema (the slot and model
kind, the candidates to try, the candidate chosen) and one materialize (the slot's model
replaced by the chosen candidate, built from the stored artifacts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.params import ChangeParams
from pipetune.plugins.hardware.apply import materialize

__all__ = ["HardwareParams", "materialize"]


@dataclass(frozen=True)
class HardwareParams(ChangeParams):
    """``slot`` and ``kind`` name the model; ``candidates`` (backend, precision, options)
    are what tune tries; ``candidate`` (with its ``backend`` and ``precision``) is what it
    chose and what materialize builds."""

    slot: str
    kind: str = "torch"
    candidates: tuple[dict[str, Any], ...] = ()
    candidate: dict[str, Any] | None = None
    backend: str | None = None
    precision: str | None = None
    advice: dict[str, Any] | None = None
    cross_target: bool = False
