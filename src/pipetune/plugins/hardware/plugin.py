"""Hook implementations of the hardware plugin."""

from __future__ import annotations

PIPETUNE_API = 1
