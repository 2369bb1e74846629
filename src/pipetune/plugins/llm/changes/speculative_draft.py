"""``llm.speculative_draft``: speculative decoding with the smaller draft model the stage
declares (same tokenizer); its acceptance rate is measured on the tuning split. Lossless."""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.llm.changes.common import materialize_config as materialize
from pipetune.plugins.llm.changes.common import tune_generate
from pipetune.plugins.llm.changes.speculative_prompt_lookup import tune_speculative

ID = "llm.speculative_draft"


@dataclass(frozen=True)
class SpeculativeDraftParams(ChangeParams):
    speculative: str = "draft"
    num_draft_tokens: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_generate(proposal, pipeline, context, tune_speculative)


CHANGE = ChangeType(ID, SpeculativeDraftParams, materialize, tune)
