"""The nlp plugin's facts: what it sees without running (inspect) and what it measures
from the shared profiling run (tokenization share, token counts, padding waste, model time
against sequence length, attention implementation, recurring sections)."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Profile
from pipetune.plugins.nlp import recognize
from pipetune.plugins.nlp.blocks import BLOCK_EMBED, BLOCK_TOKENIZE
from pipetune.plugins.nlp.padding import Encoded, length_histogram, waste_of_plan
from pipetune.plugins.nlp.truncation import LADDER

#: Texts sampled for token counts and the tokenizer speed comparison.
SAMPLE_TEXTS = 256
#: Lengths at which the model is timed in isolation.
TIMING_LENGTHS = (32, 64, 128, 256, 512)


def stage_slots(stage: Stage) -> dict[str, Any]:
    """The plain-valued settings of a stage (max_length, padding, batch_size...)."""
    return {
        name: value
        for name, value in stage.slots.items()
        if isinstance(value, bool | int | float | str) or value is None
    }


def inspect(pipeline: Pipeline) -> dict[str, Any] | None:
    stages: dict[str, Any] = {}
    for stage in pipeline.stages:
        found = recognize.recognize_stage(stage)
        if found.empty:
            continue
        entry: dict[str, Any] = {"block": found.block, "settings": stage_slots(stage)}
        if found.tokenizer is not None:
            entry["tokenizer"] = {
                "slot": found.tokenizer_slot,
                "injected": stage.injects(found.tokenizer_slot or ""),
                **found.tokenizer.to_dict(),
            }
        if found.model is not None:
            entry["model"] = {
                "slot": found.model_slot,
                "injected": stage.injects(found.model_slot or ""),
                **found.model.to_dict(),
            }
        stages[stage.name] = entry
    return {"stages": stages} if stages else None


def tokenizer_stage(pipeline: Pipeline) -> tuple[Stage, str, Any] | None:
    """The first stage holding a tokenizer: (stage, slot name, tokenizer)."""
    return _first_holding(pipeline, "tokenizer_slot")


def model_stage(pipeline: Pipeline) -> tuple[Stage, str, Any] | None:
    """The first stage holding a text model: (stage, slot name, model)."""
    return _first_holding(pipeline, "model_slot")


def _first_holding(pipeline: Pipeline, slot_field: str) -> tuple[Stage, str, Any] | None:
    """The first stage whose recognized ``slot_field`` (``tokenizer_slot``, ``model_slot``)
    names a slot: (stage, slot name, what the slot holds)."""
    for stage in pipeline.stages:
        slot = getattr(recognize.recognize_stage(stage), slot_field)
        if slot is not None:
            return stage, slot, stage.slots[slot]
    return None


def measure(
    pipeline: Pipeline, profile: Profile, observed: Observations, *, time_model: bool = True
) -> dict[str, Any] | None:
    tok = tokenizer_stage(pipeline)
    mod = model_stage(pipeline)
    if tok is None and mod is None:
        return None
    facts: dict[str, Any] = {}
    if tok is not None:
        stage, _slot, tokenizer = tok
        facts["tokenize_stage"] = stage.name
        facts.update(_tokenizer_facts(pipeline, profile, observed, stage, tokenizer))
    if mod is not None:
        stage, _slot, model = mod
        facts["model_stage"] = stage.name
        facts["attention"] = recognize.attention_implementation(model)
        facts["model_stage_share"] = profile.share(stage.name)
        if time_model:
            timings = model_time_by_length(model, _max_positions(model))
            if timings:
                facts["model_ms_by_length"] = timings
        facts.update(_padding_facts(pipeline, observed, stage))
    return facts


# -- tokenization ---------------------------------------------------------------------------


def _tokenizer_facts(
    pipeline: Pipeline, profile: Profile, observed: Observations, stage: Stage, tokenizer: Any
) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    info = recognize.tokenizer_info(tokenizer)
    facts["tokenizer_kind"] = info.kind if info else None
    texts = sample_texts(observed.inputs_of(stage.name))
    dedicated = stage.meta.get("block") == BLOCK_TOKENIZE or stage.kind == "tokenize"
    stage_share = profile.share(stage.name)
    facts["tokenize_stage_dedicated"] = dedicated
    facts["tokenize_stage_share"] = round(stage_share, 4)
    if not texts:
        facts["tokenization_share"] = stage_share if dedicated else None
        return facts

    counts = _token_counts(tokenizer, texts)
    max_length = stage.slots.get("max_length")
    if counts:
        arr = np.asarray(counts)
        facts["token_counts"] = {
            "texts": len(counts),
            "mean": round(float(arr.mean()), 1),
            "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)),
            "max": int(arr.max()),
            "histogram": length_histogram(counts, LADDER),
        }
        if isinstance(max_length, int):
            facts["token_counts"]["over_max_length"] = float((arr > max_length).mean())
    repeats = Counter(texts)
    facts["recurring_texts_share"] = round(
        sum(c for c in repeats.values() if c > 1) / len(texts), 4
    )

    # Tokenizer time in isolation: the share of the stage it explains, and how much
    # faster a Rust tokenizer built from the same vocabulary is on the same texts.
    speed = _tokenizer_speed(tokenizer, texts[:SAMPLE_TEXTS])
    facts.update(speed)
    if dedicated:
        facts["tokenization_share"] = stage_share
    else:
        per_call = stage_mean_ms(profile, stage.name)
        texts_per_call = len(texts) / max(1, len(observed.inputs_of(stage.name)))
        facts["texts_per_call"] = round(texts_per_call, 2)
        own = speed.get("tokenizer_ms_per_text")
        if own is not None and per_call:
            inside = min(1.0, own * texts_per_call / per_call)
            facts["tokenization_share"] = round(stage_share * inside, 4)
    return facts


def stage_mean_ms(profile: Profile, name: str) -> float | None:
    try:
        return profile.stage(name).mean_ms or profile.stage(name).p50_ms
    except KeyError:
        return None


def sample_texts(inputs: Sequence[Any], limit: int = 4 * SAMPLE_TEXTS) -> list[str]:
    texts: list[str] = []
    for value in inputs:
        for text in recognize.iter_texts(value):
            texts.append(text)
            if len(texts) >= limit:
                return texts
    return texts


def _token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Untruncated token counts (special tokens included), with a Rust tokenizer when one
    can be built (the counts are the same; the swap's verification checks that)."""
    from pipetune.plugins.nlp.tokenizers_swap import ids_of

    counter = _rust_or_none(tokenizer) or tokenizer
    try:
        return [len(ids) for ids in ids_of(counter, list(texts))]
    except Exception:
        return []


def _rust_or_none(tokenizer: Any) -> Any:
    from pipetune.plugins.nlp.tokenizers_swap import build_rust_tokenizer

    try:
        return build_rust_tokenizer(tokenizer)
    except Exception:
        return None


def _tokenizer_speed(tokenizer: Any, texts: Sequence[str]) -> dict[str, Any]:
    from pipetune.plugins.nlp.tokenizers_swap import ids_of

    texts = list(texts)
    if not texts:
        return {}
    out: dict[str, Any] = {}
    own = _best_time(lambda: ids_of(tokenizer, texts))
    if own is not None:
        out["tokenizer_ms_per_text"] = own * 1000 / len(texts)
    info = recognize.tokenizer_info(tokenizer)
    if info is not None and info.slow:
        rust = _rust_or_none(tokenizer)
        if rust is not None:
            fast = _best_time(lambda: ids_of(rust, texts))
            if fast and own:
                out["rust_tokenizer_speedup"] = round(own / fast, 2)
    return out


def _best_time(fn: Any, repeats: int = 2) -> float | None:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:
            return None
        times.append(time.perf_counter() - t0)
    return min(times)


# -- padding ----------------------------------------------------------------------------------


def _padding_facts(pipeline: Pipeline, observed: Observations, stage: Stage) -> dict[str, Any]:
    """Pad share of the model stage's inputs, as the stage batches them now."""
    inputs = observed.inputs_of(stage.name)
    if not inputs:
        return {}
    if stage.meta.get("block") == BLOCK_EMBED:
        sequences = [s for value in inputs for s in value if isinstance(s, Encoded)]
        if not sequences:
            return {}
        batch_size = int(stage.slots.get("batch_size", 1) or 1)
        bucket = bool(stage.slots.get("bucket", False))
        per_item = [waste_of_plan(list(v), batch_size, bucket) for v in inputs]
        real = sum(w["real_tokens"] for w in per_item)
        computed = sum(w["computed_tokens"] for w in per_item)
        return {
            "padding_waste": {
                "real_tokens": real,
                "computed_tokens": computed,
                "pad_share": round(1 - real / computed, 4) if computed else 0.0,
                "sequences": len(sequences),
                "padded_length_p50": float(np.median([s.padded_length for s in sequences])),
                "real_length_p50": float(np.median([s.length for s in sequences])),
            },
            "sequence_lengths": [s.length for s in sequences[:4096]],
        }
    masks = [m for value in inputs for m in _attention_masks(value)]
    if not masks:
        return {}
    real = int(sum(int(np.asarray(m).sum()) for m in masks))
    computed = int(sum(np.asarray(m).size for m in masks))
    return {
        "padding_waste": {
            "real_tokens": real,
            "computed_tokens": computed,
            "pad_share": round(1 - real / computed, 4) if computed else 0.0,
        }
    }


def _attention_masks(value: Any) -> list[Any]:
    if isinstance(value, Mapping) and "attention_mask" in value:
        mask = value["attention_mask"]
        detach = getattr(mask, "detach", None)
        return [detach().cpu().numpy() if callable(detach) else mask]
    if isinstance(value, list | tuple):
        return [m for part in value[:64] for m in _attention_masks(part)]
    return []


# -- model time against sequence length ------------------------------------------------------


def _max_positions(model: Any) -> int:
    info = recognize.text_model_info(model)
    return info.max_positions if info is not None and info.max_positions else 512


def model_time_by_length(
    model: Any, max_positions: int = 512, lengths: Sequence[int] = TIMING_LENGTHS
) -> dict[str, float]:
    """Milliseconds per forward pass of one sequence at each length, timed in isolation:
    the fastest of 5 runs after a warm-up (the minimum is the estimate least disturbed by
    other work on the machine), made non-decreasing in length, since a longer sequence
    never costs less. Padding and truncation estimates interpolate this curve."""
    try:
        import torch
    except ImportError:
        return {}
    out: dict[str, float] = {}
    previous = 0.0
    for length in lengths:
        if length > max_positions:
            break
        ids = torch.full((1, length), 1000, dtype=torch.long)
        mask = torch.ones_like(ids)
        try:
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)
                samples = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    model(input_ids=ids, attention_mask=mask)
                    samples.append(time.perf_counter() - t0)
        except Exception:
            return out
        previous = max(previous, min(samples) * 1000)
        out[str(length)] = round(previous, 3)
    return out


def interpolate_ms(timings: Mapping[str, float], length: float) -> float:
    """Model time at ``length`` by linear interpolation of the measured points."""
    points = sorted((int(k), float(v)) for k, v in timings.items())
    if not points:
        return float(length)
    if length <= points[0][0]:  # per-call overhead dominates short sequences
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if length <= x1:
            return y0 + (y1 - y0) * (length - x0) / (x1 - x0)
    x0, y0 = points[-2] if len(points) > 1 else (0, 0.0)
    x1, y1 = points[-1]
    return y1 + (y1 - y0) / max(1, x1 - x0) * (length - x1)
