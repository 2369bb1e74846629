"""Hook implementations of the recsys plugin."""

from __future__ import annotations

PIPETUNE_API = 1
