"""``pipetune plugins`` and plugin API versioning (issue 9 §8)."""

from __future__ import annotations

import importlib.metadata
import json
import types

import pluggy
import pytest
from click.testing import CliRunner

from pipetune import Availability, Backend, Dependency, Proposal, hookimpl
from pipetune.cli import main as cli_main
from pipetune.cli.main import build_cli
from pipetune.core.kernel.hookspecs import API_VERSION
from pipetune.core.kernel.manager import get_plugin_manager


class FakeBackend(Backend):
    name = "fake-accel"
    target = "nvidia"
    precisions = ("fp16",)

    def available(self) -> Availability:
        return Availability(False, "no CUDA device", 'pip install "pipetune[nvidia]"')

    def compile(self, model, example_inputs, precision="fp32", **options):
        raise NotImplementedError


class BrokenProbe(FakeBackend):
    name = "broken-probe"

    def available(self) -> Availability:
        raise OSError("driver exploded")


class Reporting:
    PIPETUNE_API = 1

    @hookimpl
    def register_dependencies(self):
        return [
            Dependency("json", purpose="always there"),
            Dependency("no_such_module_xyz", extra="recsys", purpose="an index"),
        ]

    @hookimpl
    def register_backends(self):
        return [FakeBackend(), BrokenProbe()]


def _module(name: str, **attrs):
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, hookimpl(value) if callable(value) else value)
    return module


def _run(pm, *args):
    runner = CliRunner(env={"COLUMNS": "200"})  # rich folds long cells at 80 columns
    return runner.invoke(build_cli(pm), list(args), catch_exceptions=False)


@pytest.fixture
def report_pm():
    future = _module("future", PIPETUNE_API=API_VERSION + 1, propose_changes=lambda pipeline: [])
    return get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[("reporting", Reporting()), ("future", future)],
    )


def test_json_lists_plugins_dependencies_backends_machine(report_pm):
    result = _run(report_pm, "plugins", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["api_version"] == API_VERSION
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["reporting"]["status"] == "loaded"
    assert plugins["reporting"]["hooks"] == ["register_backends", "register_dependencies"]
    assert plugins["reporting"]["api"] == 1
    assert plugins["future"]["status"] == "incompatible"
    assert f"plugin API {API_VERSION + 1}" in plugins["future"]["reason"]
    assert "upgrade pipetune" in plugins["future"]["reason"]

    deps = {d["module"]: d for d in data["dependencies"]}
    assert deps["json"]["available"] is True
    missing = deps["no_such_module_xyz"]
    assert missing["available"] is False and missing["install"] == 'pip install "pipetune[recsys]"'

    backends = {b["name"]: b for b in data["backends"]}
    assert backends["fake-accel"]["available"] is False
    assert backends["fake-accel"]["reason"] == "no CUDA device"
    assert backends["fake-accel"]["install"] == 'pip install "pipetune[nvidia]"'
    assert "driver exploded" in backends["broken-probe"]["reason"]

    machine = data["machine"]
    assert machine["cores"] >= 1 and "isa" in machine and "apple_silicon" in machine


def test_table_shows_status_reason_and_install(report_pm):
    result = _run(report_pm, "plugins")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for fragment in (
        "reporting",
        "incompatible",
        "no_such_module_xyz",
        'pip install "pipetune[recsys]"',
        "fake-accel",
        "no CUDA device",
        "machine",
        "Apple Silicon",
    ):
        assert fragment in text, fragment


def test_builtins_are_listed_with_their_hooks():
    result = _run(get_plugin_manager(entry_points=False), "plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(result.output)["plugins"]}
    assert plugins["generic"]["source"] == "builtin"
    assert "register_output_kinds" in plugins["generic"]["hooks"]


def test_broken_entry_point_plugin_is_reported_and_the_rest_load(monkeypatch, capsys):
    dist = types.SimpleNamespace(name="pipetune-broken", version="0.3.1")

    def load():
        raise ImportError("cannot import name 'gone' from 'somewhere'")

    broken = types.SimpleNamespace(
        name="broken", value="pipetune_broken:plugin", dist=dist, load=load
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken])
    assert cli_main.main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert plugins["broken"]["status"] == "failed"
    assert plugins["broken"]["version"] == "0.3.1"
    assert plugins["broken"]["distribution"] == "pipetune-broken"
    assert "cannot import name 'gone'" in plugins["broken"]["reason"]
    assert plugins["generic"]["status"] == "loaded"


def test_broken_entry_point_in_strict_mode_is_one_error(monkeypatch, capsys):
    dist = types.SimpleNamespace(name="pipetune-broken", version="0.3.1")

    def load():
        raise ImportError("nope")

    broken = types.SimpleNamespace(name="broken", value="x:y", dist=dist, load=load)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken])
    monkeypatch.setenv("PIPETUNE_STRICT_PLUGINS", "1")
    assert cli_main.main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert "plugin 'broken' (pipetune-broken 0.3.1) failed to load" in err
    assert "Traceback" not in err


def test_hook_failures_are_listed(report_pm):
    def register_dependencies():
        raise RuntimeError("oops")

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[("flaky", _module("flaky", register_dependencies=register_dependencies))],
    )
    data = json.loads(_run(pm, "plugins", "--json").output)
    assert data["hook_failures"] == [
        {"plugin": "flaky", "hook": "register_dependencies", "error": "RuntimeError: oops"}
    ]


# -- plugin API versioning -----------------------------------------------------------------


def test_hooks_can_gain_arguments_without_breaking_old_plugins():
    """A plugin written when propose_changes took only ``pipeline`` keeps working when the
    host passes more (pluggy calls each implementation with the arguments it names)."""

    class NewerSpecs:
        @pluggy.HookspecMarker("pipetune")
        def propose_changes(self, pipeline, profile, requirements, budget_s):
            """An imagined API 2: the hook gained ``budget_s``."""

    def old_style(pipeline):
        return [Proposal(id="old.x", plugin="old", stage=pipeline, title="t")]

    newer_host = pluggy.PluginManager("pipetune")
    newer_host.add_hookspecs(NewerSpecs)
    newer_host.register(_module("old", propose_changes=old_style), name="old")
    (result,) = newer_host.hook.propose_changes(
        pipeline="s", profile=None, requirements=None, budget_s=60
    )
    assert result[0].id == "old.x"

    # and through the host's own one-plugin-at-a-time calling
    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[("old", _module("old", propose_changes=old_style))],
    )
    [(plugin, proposals)] = pm.call_each(
        "propose_changes", pipeline="s", profile=None, requirements=None, budget_s=60
    )
    assert plugin == "old" and proposals[0].stage == "s"


def test_a_plugin_using_an_argument_this_host_lacks_is_incompatible():
    def propose_changes(pipeline, budget_s):
        return []

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[("newer", _module("newer", propose_changes=propose_changes))],
    )
    [status] = pm.load_report
    assert status.status == "incompatible"
    assert "{'budget_s'}" in status.error and "needs a newer pipetune" in status.error


def test_a_hook_this_host_does_not_have_says_why():
    def optimize_everything(pipeline):
        return []

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[("newer", _module("newer", optimize_everything=optimize_everything))],
    )
    [status] = pm.load_report
    assert status.status == "failed"
    assert "unknown hook 'optimize_everything'" in status.error
    assert f"not in plugin API {API_VERSION}" in status.error


def test_plugin_api_must_be_an_integer():
    pm = get_plugin_manager(
        builtins=False, entry_points=False, plugins=[("odd", _module("odd", PIPETUNE_API="two"))]
    )
    assert "PIPETUNE_API must be an integer" in pm.load_report[0].error


def test_a_plugin_returning_garbage_is_reported_not_a_crash():
    def register_dependencies():
        return Dependency("json")  # not a list

    def register_backends():
        return ["not a backend"]

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[
            ("sloppy", _module("sloppy", register_dependencies=register_dependencies)),
            ("odd", _module("odd", register_backends=register_backends)),
        ],
    )
    result = _run(pm, "plugins", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["hook_failures"][0]["error"] == "returned Dependency, not a list"
    assert "available() raised AttributeError" in data["backends"][0]["reason"]
