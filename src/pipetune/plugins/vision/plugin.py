"""Hook implementations of the vision plugin."""

from __future__ import annotations

PIPETUNE_API = 1
