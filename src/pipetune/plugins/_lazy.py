"""A plugin package's lazy exports: ``from pipetune.plugins.llm import generate_stage``
imports the module that defines the name only then, so importing the package needs none of
the plugin's heavy libraries (torch, transformers, faiss, OpenCV...)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], *, keep: dict[str, Any] | None = None
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``exports`` maps each name to the module
    that defines it; any other name raises ``AttributeError`` as a module's would. With
    ``keep`` (the package's ``globals()``) a name, once imported, stays in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        if keep is not None:
            keep[name] = value
        return value

    return __getattr__
