"""A kit for testing pipetune plugins (and pipetune itself).

Installed with pipetune, and registered as a pytest plugin (entry point ``pytest11``), so
its fixtures are available in any test suite without a ``conftest.py``:

* ``pm``: a fresh, strict plugin manager for each test, with no plugins (mark a test
  ``@pytest.mark.pipetune_builtins`` to load pipetune's built-in plugins too);
* ``make_pm``: the factory, for managers with your plugin registered;
* ``hook_recorder``: records every hook call on ``pm``: plugin, arguments and result.

and, to import::

    from pipetune.testing import (
        make_plugin_manager, make_pipeline, make_stage, make_workload, make_profile,
        assert_proposes, assert_no_proposal, apply_proposal, HookRecorder, digest,
        invoke_cli,
    )

A plugin test typically reads::

    def test_proposes_the_swap(make_pm):
        pm = make_pm(my_plugin)
        pipeline = make_pipeline(make_stage("tokenize", kind="tokenize", cost_ms=2))
        proposal = assert_proposes(pm, pipeline, make_workload(n=20), id="myplugin.swap")
        assert proposal.est_stage_speedup > 1
"""

from __future__ import annotations

from pipetune.testing.assertions import (
    apply_proposal,
    assert_no_proposal,
    assert_proposes,
    assert_unchanged,
    check_proposal,
    collect_proposals,
    digest,
    quick_profile,
)
from pipetune.testing.builders import make_pipeline, make_profile, make_stage, make_workload
from pipetune.testing.cli import invoke_cli
from pipetune.testing.manager import make_plugin_manager
from pipetune.testing.recorder import HookCall, HookRecorder

__all__ = [
    "HookCall",
    "HookRecorder",
    "apply_proposal",
    "assert_no_proposal",
    "assert_proposes",
    "assert_unchanged",
    "check_proposal",
    "collect_proposals",
    "digest",
    "invoke_cli",
    "make_pipeline",
    "make_plugin_manager",
    "make_profile",
    "make_stage",
    "make_workload",
    "quick_profile",
]
