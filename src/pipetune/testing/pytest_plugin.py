"""The pipetune testing kit as a pytest plugin (entry point ``pytest11: pipetune``).

Fixtures:

* ``pm`` -- a fresh, strict plugin manager per test with no plugins loaded; a test marked
  ``@pytest.mark.pipetune_builtins`` gets pipetune's built-in plugins too. Installed
  third-party plugins are never loaded: a test must not depend on the machine.
* ``make_pm`` -- :func:`pipetune.testing.make_plugin_manager`, for a manager with your
  plugin: ``make_pm(("myplugin", my_plugin_module))``.
* ``hook_recorder`` -- a :class:`pipetune.testing.HookRecorder` installed on ``pm``.
* ``pipetune_artifacts`` -- a fresh folder for artifacts built while applying a change.

Nothing is imported from pipetune until a fixture is used, so this plugin costs other test
suites nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager
    from pipetune.testing.recorder import HookRecorder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pipetune_builtins: the `pm` fixture loads pipetune's built-in plugins"
    )


@pytest.fixture
def make_pm() -> Callable[..., PipetunePluginManager]:
    from pipetune.testing.manager import make_plugin_manager

    return make_plugin_manager


@pytest.fixture
def pm(request: pytest.FixtureRequest, make_pm: Callable[..., Any]) -> PipetunePluginManager:
    builtins = request.node.get_closest_marker("pipetune_builtins") is not None
    return make_pm(builtins=builtins)


@pytest.fixture
def hook_recorder(pm: PipetunePluginManager) -> Iterator[HookRecorder]:
    from pipetune.testing.recorder import HookRecorder

    with HookRecorder(pm) as recorder:
        yield recorder


@pytest.fixture
def pipetune_artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "pipetune-artifacts"
    folder.mkdir()
    return folder
