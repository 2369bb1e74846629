"""Hook implementations of the generic plugin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.hookspecs import hookimpl
from pipetune.core.results import Fidelity
from pipetune.plugins.generic import fidelity

PIPETUNE_API = 1


@hookimpl(trylast=True)
def compare_outputs(
    output_kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None,
) -> Fidelity | None:
    """Labels: agreement (and accuracy with labels); tensors: 1 - relative error; anything
    else: exact equality. Domain plugins answer first for their own kinds."""
    if output_kind == "labels":
        return fidelity.label_agreement(baseline, candidate, labels)
    if output_kind == "tensor":
        return fidelity.tensor_closeness(baseline, candidate)
    if output_kind in ("any", "token_ids", "tokens"):
        return fidelity.exact_match(baseline, candidate)
    return None
