"""Hook implementations of the llm plugin."""

from __future__ import annotations

PIPETUNE_API = 1
