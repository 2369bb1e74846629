"""Property: no generated [tool.pipetune] table or workload file makes ``pipetune profile``
end with an internal error. CI runs a fixed, small number of examples; the 2,000-example
run is ``python -m benchmarks.control.fuzz_config``."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.faults.fuzzing import Case, cases, run_case

pytestmark = pytest.mark.slow  # subprocess fault tests: each case runs pipetune in a child process

#: Examples per CI run (``PIPETUNE_FUZZ_EXAMPLES`` raises it locally).
EXAMPLES = int(os.environ.get("PIPETUNE_FUZZ_EXAMPLES", "40"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: CI must not flake on a new one
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_no_generated_config_or_workload_is_an_internal_error(
    tmp_path_factory, monkeypatch, case: Case
):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path_factory.getbasetemp() / "store"))
    outcome = run_case(case, tmp_path_factory.mktemp("fuzz"))
    assert not outcome.internal, f"exit {outcome.code}:\n{outcome.err}\n{case}"
