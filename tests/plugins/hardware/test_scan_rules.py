"""hardware scan rules: a true positive and a near miss each (PT-HW002 via scan_file)."""

from __future__ import annotations

import pytest

from pipetune.plugins.hardware import scan_rules
from tests.scan.rule_cases import assert_case

CASES = {
    "PT-HW001": (
        """
        from transformers import AutoModel
        model = AutoModel.from_pretrained("bert").cuda()
        """,
        """
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("bert").cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        """,
    ),
    "PT-HW002": (
        """
        import torch
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(4) as pool:
            results = list(pool.map(infer, chunks))
        """,
        """
        import torch
        from concurrent.futures import ProcessPoolExecutor
        def init():
            torch.set_num_threads(1)
        with ProcessPoolExecutor(4, initializer=init) as pool:
            results = list(pool.map(infer, chunks))
        """,
    ),
    "PT-HW003": (
        """
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        """,
        """
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        """,
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_true_positive_and_near_miss(rule):
    hit, miss = CASES[rule]
    assert_case(scan_rules, "hardware", rule, hit, miss)


def test_fp32_move_of_a_tensor_or_an_explicit_dtype_is_not_flagged():
    from tests.scan.rule_cases import findings

    code = """
    import torch
    from transformers import AutoModel
    x = batch.to("cuda")
    model = AutoModel.from_pretrained("bert", torch_dtype=torch.float16).to("cuda")
    """
    assert findings(scan_rules, "hardware", code, "PT-HW001") == []
