"""Fidelity for generation.

* :func:`token_match`: lossless changes (KV cache, prefix cache, batching, speculative
  decoding, CUDA graphs) must reproduce the baseline's greedy tokens exactly; the figure
  is the share of requests whose tokens are identical, with the first divergence (which
  request, which position, which tokens) in the details.
* :func:`perplexity_fidelity`: lossy changes to a generate stage's model (the hardware
  plugin's int8 / fp16 / bf16 weights) are judged by the change in perplexity on held-out
  text, which moves smoothly with quantization error where exact-token agreement would
  collapse at the first flipped argmax. ``value = 1 - max(0, relative increase)``, so
  a 2 % perplexity increase scores 0.98 against a ``1 - max_accuracy_drop`` threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.registry import OutputKind
from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.fidelity import share_agreeing
from pipetune.plugins.llm.records import Generation, token_list

#: Held-out text for perplexity: none of it appears in the demo's request stream.
HELD_OUT_TEXT: tuple[str, ...] = (
    "The river had been rising for three days when the village council finally met in "
    "the school hall. Farmers spoke first, worried about the fields closest to the bank, "
    "and then the baker asked whether the bridge would hold if the water reached the "
    "old flood mark painted on the mill.",
    "Photosynthesis turns light into chemical energy. In the chloroplasts of a leaf, "
    "water is split and carbon dioxide is fixed into sugars, releasing oxygen as a "
    "by-product. The process depends on temperature, on the intensity of the light and "
    "on how much water the plant can draw from the soil.",
    "To install the shelf, first find the studs in the wall with a detector and mark "
    "them with a pencil. Hold the bracket against the wall, check that it is level, and "
    "drill pilot holes before driving in the screws. Do not load the shelf for an hour "
    "if you used wall anchors with glue.",
    "Interest rates were left unchanged at the central bank's meeting on Wednesday. The "
    "governor said inflation had eased for the fourth month in a row but remained above "
    "the target, and that the board would wait for more data on wages before deciding "
    "whether to cut rates later in the year.",
    "def moving_average(values, window):\n    if window <= 0:\n        raise ValueError("
    "'window must be positive')\n    total = sum(values[:window])\n    out = [total / "
    "window]\n    for i in range(window, len(values)):\n        total += values[i] - "
    "values[i - window]\n        out.append(total / window)\n    return out\n",
    "Dear neighbours, the street party will take place on Saturday from two in the "
    "afternoon. Please bring a dish to share and a chair if you can. The road will be "
    "closed to cars between numbers 10 and 40, and the children's games start at three.",
)


def first_divergence(baseline: Sequence[int], candidate: Sequence[int]) -> int | None:
    """The first position where two token sequences differ (None when identical)."""
    for i, (a, b) in enumerate(zip(baseline, candidate, strict=False)):
        if a != b:
            return i
    if len(baseline) != len(candidate):
        return min(len(baseline), len(candidate))
    return None


def _tokens_or_error(value: Any) -> tuple[list[int] | None, str | None]:
    if isinstance(value, Generation):
        return list(value.tokens), value.error
    try:
        return token_list(value), None
    except TypeError:
        return None, None


def token_match(baseline: Sequence[Any], candidate: Sequence[Any]) -> Fidelity:
    """Share of requests whose greedy tokens are identical; first divergence in details.

    A request the baseline refused must be refused by the candidate too (same outcome);
    its error message is not compared.
    """
    n = len(baseline)
    agree = 0
    tokens_total = tokens_matching = 0
    first: dict[str, Any] | None = None
    for index, (b, c) in enumerate(zip(baseline, candidate, strict=True)):
        b_tokens, b_error = _tokens_or_error(b)
        c_tokens, c_error = _tokens_or_error(c)
        if b_tokens is None or c_tokens is None:
            same = b == c
            position = None if same else 0
        else:
            position = first_divergence(b_tokens, c_tokens)
            same = position is None and (b_error is None) == (c_error is None)
            tokens_total += len(b_tokens)
            tokens_matching += len(b_tokens) if position is None else position
        if same:
            agree += 1
        elif first is None:
            first = {"request": index, "position": position}
            if b_tokens is not None and c_tokens is not None and position is not None:
                first["baseline_token"] = b_tokens[position] if position < len(b_tokens) else None
                first["candidate_token"] = c_tokens[position] if position < len(c_tokens) else None
            if (b_error is None) != (c_error is None):
                first["baseline_error"], first["candidate_error"] = b_error, c_error
    details = {
        "requests_identical": agree,
        "requests": n,
        "tokens_before_divergence": tokens_matching / tokens_total if tokens_total else 1.0,
        "first_divergence": first,
    }
    return share_agreeing("exact_greedy_tokens", agree, n, details)


def _logits(output: Any) -> Any:
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if isinstance(output, tuple | list):
        return output[0]
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    return output


def encode_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int = 256) -> list[list[int]]:
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(t) for t in ids][:max_tokens]
        if len(ids) >= 2:
            out.append(ids)
    return out


def perplexity(model: Any, sequences: Sequence[Sequence[int]]) -> tuple[float, int]:
    """Perplexity of ``model`` over token ``sequences`` (next-token NLL, averaged over
    every predicted token) and the number of tokens scored. Works with anything that
    returns logits for ``model(input_ids)``."""
    import torch

    total_nll, count = 0.0, 0
    device = getattr(model, "device", None)
    with torch.inference_mode():
        for ids in sequences:
            x = torch.tensor([list(ids)], dtype=torch.long)
            if isinstance(device, torch.device):
                x = x.to(device)
            logits = _logits(model(x)).float()
            logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
            target = x[0, 1:]
            nll = -logprobs.gather(1, target.unsqueeze(1)).sum()
            total_nll += float(nll)
            count += int(target.numel())
    if count == 0:
        return float("nan"), 0
    return math.exp(total_nll / count), count


def perplexity_fidelity(
    baseline_model: Any, candidate_model: Any, sequences: Sequence[Sequence[int]]
) -> Fidelity:
    """The candidate model's perplexity change on held-out token ``sequences``."""
    base, n = perplexity(baseline_model, sequences)
    cand, _ = perplexity(candidate_model, sequences)
    relative = (cand - base) / base if base > 0 and math.isfinite(base) else float("inf")
    value = 1.0 - max(0.0, relative) if math.isfinite(relative) else 0.0
    change = f"{relative:+.1%}" if math.isfinite(relative) else "not finite"
    return Fidelity(
        metric="perplexity",
        value=max(0.0, value),
        n=n,
        details={
            "baseline_perplexity": base,
            "candidate_perplexity": cand,
            "delta": cand - base,
            "relative_delta": relative,
            "sequences": len(sequences),
            "tokens": n,
            # what a rejection quotes: the raw figures behind the value
            "summary": f"perplexity {base:.2f} -> {cand:.2f} ({change}) on {n} held-out tokens",
        },
    )


def output_kinds() -> list[OutputKind]:
    """What ``register_output_kinds`` returns for the llm plugin."""
    return [
        OutputKind(
            "tokens",
            "exact_greedy_tokens",
            lambda baseline, candidate, labels: token_match(baseline, candidate),
            "share of requests whose greedy tokens are identical (first divergence in details)",
        )
    ]
