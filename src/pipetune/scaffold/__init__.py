"""``pipetune plugins new NAME``: a new third-party plugin package, ready to install.

The package has a ``pyproject.toml`` with the ``pipetune`` entry point, a module of hook
implementations that measures, proposes and applies one real change (long lists used for
lookups become indexed lists) and contributes a scan rule, and tests written with
``pipetune.testing``.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pipetune.core.kernel.errors import ConfigError

#: A plugin name: the entry point name and the prefix of proposal ids.
NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
RESERVED = frozenset({"pipetune", "generic", "recsys", "nlp", "vision", "llm", "hardware"})


@dataclass(frozen=True)
class Scaffold:
    name: str
    root: Path
    files: tuple[Path, ...]

    @property
    def module(self) -> str:
        return module_name(self.name)


def module_name(name: str) -> str:
    return f"pipetune_{name}"


def validate_name(name: str) -> str:
    """The plugin name, or :class:`ConfigError` saying what a valid one looks like."""
    if not NAME.match(name) or name.endswith("_") or "__" in name:
        raise ConfigError(
            f"invalid plugin name {name!r}: use 2-40 lowercase letters, digits and single "
            "underscores, starting with a letter (it becomes the entry point name, the prefix "
            "of the plugin's proposal ids and part of the package name), e.g. 'dedupe'"
        )
    if keyword.iskeyword(name):
        raise ConfigError(f"invalid plugin name {name!r}: a Python keyword")
    if name in RESERVED:
        raise ConfigError(f"invalid plugin name {name!r}: a built-in plugin is called that")
    return name


def create(name: str, parent: Path) -> Scaffold:
    """Write the package ``pipetune-NAME`` under ``parent``. Refuses an existing path."""
    from pipetune.scaffold import templates

    validate_name(name)
    dist = f"pipetune-{name.replace('_', '-')}"
    root = parent / dist
    if root.exists() or root.is_symlink():
        raise ConfigError(f"{root} already exists: choose another name or folder (nothing written)")
    if not parent.is_dir():
        raise ConfigError(f"{parent} is not a folder")
    module = module_name(name)
    values = {
        "name": name,
        "module": module,
        "dist": dist,
        "rule": name.upper().replace("_", ""),
    }
    files = {
        "pyproject.toml": templates.PYPROJECT,
        "README.md": templates.README,
        f"src/{module}/__init__.py": templates.INIT,
        f"src/{module}/indexed.py": templates.INDEXED,
        f"src/{module}/plugin.py": templates.PLUGIN,
        "tests/conftest.py": templates.TESTS_CONFTEST,
        f"tests/test_{name}.py": templates.TESTS,
    }
    written = []
    root.mkdir(parents=True)
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
        written.append(path)
    return Scaffold(name, root, tuple(written))
