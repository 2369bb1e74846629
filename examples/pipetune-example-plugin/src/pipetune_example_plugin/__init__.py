"""An example third-party pipetune plugin: list membership tests become frozenset lookups."""

from __future__ import annotations

__version__ = "0.1.0"
