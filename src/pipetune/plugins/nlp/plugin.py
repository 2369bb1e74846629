"""Hook implementations of the nlp plugin."""

from __future__ import annotations

PIPETUNE_API = 1
