"""Entry point of the ``pipetune`` command."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("pipetune: the CLI is not built yet")
