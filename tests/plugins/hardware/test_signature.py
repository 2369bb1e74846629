"""Calling conventions: how an eager call maps onto graph inputs and back."""

from __future__ import annotations

import collections
import json

import pytest
import torch

from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.plugins.hardware.signature import (
    CallSignature,
    count_leaves,
    output_structure,
    rebuild_output,
)


class TwoInputs(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None, return_dict=True):
        return input_ids


def test_capture_binds_positional_and_keyword_calls_alike():
    module = TwoInputs()
    ids, mask = torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long)
    by_name, tensors = CallSignature.capture(module, (), {"input_ids": ids, "attention_mask": mask})
    by_position, _ = CallSignature.capture(module, (ids, mask), {})
    assert by_name.input_names == by_position.input_names == ("input_ids", "attention_mask")
    assert by_name.key() == by_position.key()
    assert set(tensors) == {"input_ids", "attention_mask"}
    feeds = by_name.feeds((ids,), {"attention_mask": mask})
    assert [f.dtype.name for f in feeds] == ["int64", "int64"]


def test_feeds_refuse_calls_the_graph_was_not_exported_for():
    module = TwoInputs()
    ids = torch.ones(1, 3, dtype=torch.long)
    signature, _ = CallSignature.capture(module, (ids,), {"return_dict": True})
    assert signature.constants == {"return_dict": True}
    with pytest.raises(PipelineError, match="return_dict=True"):
        signature.feeds((ids,), {"return_dict": False})
    with pytest.raises(PipelineError, match="without argument 'attention_mask'"):
        signature.feeds((ids,), {"return_dict": True, "attention_mask": ids})
    with pytest.raises(PipelineError, match="has 1 dimensions, the exported graph takes 2"):
        signature.feeds((torch.ones(3, dtype=torch.long),), {"return_dict": True})
    int32 = signature.feeds((ids.int(),), {"return_dict": True})
    assert int32[0].dtype.name == "int64"  # cast to what the graph takes


def test_capture_refuses_unsupported_arguments():
    with pytest.raises(Rejected, match="only tensor and plain"):
        CallSignature.capture(TwoInputs(), (torch.ones(1, 2),), {"attention_mask": {"a": 1}})
    with pytest.raises(Rejected, match="without tensor arguments"):
        CallSignature.capture(TwoInputs(), (), {"return_dict": True})


def test_signature_round_trips_json():
    signature, _ = CallSignature.capture(TwoInputs(), (torch.ones(2, 5),), {"return_dict": False})
    data = json.loads(json.dumps(signature.to_dict()))
    assert CallSignature.from_dict(data) == signature


Pair = collections.namedtuple("Pair", "left right")


@pytest.mark.parametrize(
    "value",
    [
        torch.ones(2),
        (torch.ones(1), None, [torch.zeros(2), 3]),
        {"logits": torch.ones(2), "extra": (torch.ones(1),)},
        Pair(torch.ones(1), torch.zeros(1)),
    ],
)
def test_output_structure_round_trips(value):
    structure, leaves = output_structure(value)
    structure = json.loads(json.dumps(structure))
    assert count_leaves(structure) == len(leaves)
    rebuilt = rebuild_output(structure, [leaf * 1 for leaf in leaves])
    assert type(rebuilt) is type(value)
    assert output_structure(rebuilt)[0] == structure


def test_model_output_round_trips_with_its_class():
    transformers = pytest.importorskip("transformers")
    output = transformers.modeling_outputs.BaseModelOutputWithPooling(
        last_hidden_state=torch.ones(1, 3, 4), pooler_output=torch.zeros(1, 4)
    )
    structure, leaves = output_structure(output)
    assert structure["keys"] == ["last_hidden_state", "pooler_output"]
    rebuilt = rebuild_output(json.loads(json.dumps(structure)), leaves)
    assert isinstance(rebuilt, transformers.modeling_outputs.BaseModelOutputWithPooling)
    assert rebuilt.last_hidden_state.shape == (1, 3, 4)
    assert rebuilt[0] is rebuilt.last_hidden_state


def test_rebuild_checks_the_number_of_outputs():
    structure, _ = output_structure((torch.ones(1), torch.ones(1)))
    with pytest.raises(PipelineError, match="fewer outputs"):
        rebuild_output(structure, [torch.ones(1)])
    with pytest.raises(PipelineError, match="more outputs"):
        rebuild_output(structure, [torch.ones(1)] * 3)


def test_unsupported_output_type_is_rejected():
    with pytest.raises(Rejected, match="a compiled graph can return"):
        output_structure({"x": object()})
