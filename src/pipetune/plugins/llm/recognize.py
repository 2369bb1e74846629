"""Recognizing generate steps: the plugin's own block, and plain user code over a causal LM.

Recognition never imports transformers or torch: library types are recognized by their
class names and attributes, so a pipeline without the ``llm`` extra is simply not an LLM
pipeline.

For a stage that is *not* the plugin's block but injects a transformers causal LM through a
``model`` slot, :func:`probe_generate` runs the stage on one input with a forward hook
that records every forward call of the model (how many tokens, whether a KV cache was
passed), which tells a ``generate(..., use_cache=False)`` or a hand-written loop that
re-runs the whole prefix from a cached decode. The hook is removed afterwards; the model's
weights and configuration are never touched.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.llm.blocks import is_generate_block


def is_causal_lm(obj: Any) -> bool:
    """A transformers model that can generate (``*ForCausalLM``, ``*LMHeadModel``), or
    a proxy the plugin made around one."""
    if obj is None or isinstance(obj, str | bytes | int | float):
        return False
    inner = getattr(obj, "__pipetune_wrapped__", None)
    if inner is not None:
        return is_causal_lm(inner)
    names = [cls.__name__ for cls in type(obj).__mro__]
    if "PreTrainedModel" not in names:
        return False
    can_generate = getattr(obj, "can_generate", None)
    try:
        if callable(can_generate) and can_generate():
            return True
    except Exception:
        pass
    name = type(obj).__name__
    return name.endswith(("ForCausalLM", "LMHeadModel"))


def model_slot(stage: Stage) -> str | None:
    """The name of the slot holding a causal LM (``model`` first)."""
    if is_causal_lm(stage.slots.get("model")):
        return "model"
    for name, value in stage.slots.items():
        if name not in ("draft_model",) and is_causal_lm(value):
            return name
    return None


def generate_stages(pipeline: Pipeline) -> list[Stage]:
    """Stages that generate with a causal LM: the plugin's block, or any stage holding a
    causal LM in a slot (kind ``generate``, or a model that can generate)."""
    found = []
    for stage in pipeline.stages:
        if is_generate_block(stage) or model_slot(stage) is not None:
            found.append(stage)
    return found


def model_facts(model: Any) -> dict[str, Any]:
    """Size, precision, device, context window and attention implementation of a model,
    without running it."""
    from pipetune.plugins.llm.engine import context_window

    inner = getattr(model, "__pipetune_wrapped__", model)
    facts: dict[str, Any] = {"class": type(inner).__name__}
    params = getattr(inner, "parameters", None)
    if callable(params):
        total = weight_bytes = 0
        dtypes: set[str] = set()
        device = None
        seen: set[int] = set()
        for p in params():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            weight_bytes += p.numel() * p.element_size()
            dtypes.add(str(p.dtype).replace("torch.", ""))
            device = device or str(p.device)
        facts.update(
            parameters=total,
            weight_bytes=weight_bytes,
            dtype=",".join(sorted(dtypes)),
            device=device,
        )
    config = getattr(inner, "config", None)
    facts["context_window"] = context_window(inner)
    facts["layers"] = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    facts["attention"] = getattr(config, "_attn_implementation", None)
    facts["config_use_cache"] = getattr(config, "use_cache", None)
    generation_config = getattr(inner, "generation_config", None)
    if generation_config is not None:
        facts["generation_use_cache"] = getattr(generation_config, "use_cache", None)
    return facts


def stage_facts(stage: Stage) -> dict[str, Any]:
    """What is known about a generate stage before running it."""
    facts: dict[str, Any] = {"stage": stage.name}
    if is_generate_block(stage):
        config = stage.slots["config"]
        facts.update(
            block=True,
            kv_cache=config.use_cache,
            batching=config.batching,
            max_batch=config.max_batch if config.batching != "none" else 1,
            prefix_cache=len(config.prefixes),
            speculative=config.speculative,
            cuda_graph=config.cuda_graph,
            max_new_tokens=config.max_new_tokens,
            draft_model=stage.slots.get("draft_model") is not None,
        )
        facts["model"] = model_facts(stage.slots["model"])
    else:
        slot = model_slot(stage)
        facts.update(block=False, model_slot=slot, injects_model=bool(slot and stage.injects(slot)))
        if slot:
            facts["model"] = model_facts(stage.slots[slot])
            facts["wrapped"] = getattr(stage.slots[slot], "__pipetune_wrapped__", None) is not None
        facts["batching"] = "none" if stage.batch_fn is None else "user batch_fn"
    return facts


def _called_from_generate(depth: int = 40) -> bool:
    """Whether the current forward call comes from transformers' ``generate`` (rather
    than a hand-written decode loop): a ``generate`` frame of ``transformers.generation``
    on the stack."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and depth > 0:
        code = frame.f_code
        if code.co_name == "generate" and "generation" in code.co_filename:
            return True
        frame = frame.f_back
        depth -= 1
    return False


class _ForwardRecorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        shape = tuple(getattr(ids, "shape", ()) or ())
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        cached = 0
        if cache is not None:
            getter = getattr(cache, "get_seq_length", None)
            try:
                cached = int(getter()) if callable(getter) else 1
            except Exception:
                cached = 1
        self.calls.append(
            {
                "tokens": int(shape[-1]) if shape else 0,
                "batch": int(shape[0]) if len(shape) > 1 else 1,
                "cache_in": cache is not None,
                "cached_tokens": cached,
                "use_cache": kwargs.get("use_cache"),
                "via_generate": _called_from_generate(),
            }
        )


def probe_generate(stage: Stage, item: Any, *, max_calls: int = 512) -> dict[str, Any]:
    """Run ``stage`` on ``item`` and classify how its model was called.

    Returns ``{"forward_calls", "kv_cache": bool | None, "prefix_rerun": bool,
    "via_generate": bool, "tokens_processed", "tokens_generated_estimate"}``. ``kv_cache``
    is False when every call after the first re-ran a growing prefix without a cache;
    ``via_generate`` when every forward call came from transformers' ``generate`` (so
    ``generate``'s own options, through :class:`CachedGenerate`, reach it), False for a
    hand-written loop over ``model(...)``.
    """
    slot = model_slot(stage)
    if slot is None:
        return {"probe": "no causal LM in the stage's slots"}
    model = stage.slots[slot]
    target = getattr(model, "__pipetune_wrapped__", model)
    recorder = _ForwardRecorder()
    register = getattr(target, "register_forward_pre_hook", None)
    if not callable(register):
        return {"probe": f"{type(target).__name__} does not accept forward hooks"}
    handle = register(recorder, with_kwargs=True)
    try:
        import torch

        with torch.inference_mode():
            stage(item)
    except Exception as exc:
        return {"probe": f"the stage raised {type(exc).__name__}: {exc}"}
    finally:
        handle.remove()
    calls = recorder.calls[:max_calls]
    if not calls:
        return {"forward_calls": 0, "kv_cache": None, "probe": "the model was not called"}
    later = calls[1:]
    no_cache_rerun = (
        bool(later)
        and all(not c["cache_in"] and c["tokens"] > 1 for c in later)
        and all(b["tokens"] > a["tokens"] for a, b in zip(calls, later, strict=False))
    )
    cached_decode = any(c["cache_in"] and c["tokens"] <= 8 for c in later)
    return {
        "forward_calls": len(recorder.calls),
        "kv_cache": False if no_cache_rerun else (True if cached_decode else None),
        "prefix_rerun": no_cache_rerun,
        "via_generate": all(c["via_generate"] for c in calls),
        "tokens_processed": sum(c["tokens"] * c["batch"] for c in calls),
        "first_call_tokens": calls[0]["tokens"],
        "tokens_generated_estimate": len(calls),
    }


class CachedGenerate:
    """A stand-in for a user's causal LM whose ``generate`` always keeps a KV cache
    (and optionally drafts by prompt lookup); everything else goes to the model itself.

    Used when a user's stage calls ``model.generate(..., use_cache=False)``: replacing
    the ``model`` slot with this proxy fixes the loop without touching the user's code
    or model (the model's own ``generation_config`` is not modified either).
    """

    def __init__(self, model: Any, prompt_lookup_num_tokens: int | None = None):
        object.__setattr__(self, "__pipetune_wrapped__", model)
        object.__setattr__(self, "_prompt_lookup", prompt_lookup_num_tokens)

    @property
    def prompt_lookup_num_tokens(self) -> int | None:
        """The prompt-lookup draft length generate is given (None: no speculation)."""
        return self._prompt_lookup

    def __pipetune_rewrap__(self, model: Any) -> CachedGenerate:
        """The same proxy around another model: how a plugin that replaces the model
        behind it (the hardware plugin's int8 / fp16 copy) keeps what this proxy does."""
        return CachedGenerate(model, self._prompt_lookup)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["use_cache"] = True
        if self._prompt_lookup:
            kwargs.setdefault("prompt_lookup_num_tokens", self._prompt_lookup)
        config = kwargs.get("generation_config")
        if config is not None and getattr(config, "use_cache", True) is False:
            import copy

            config = copy.deepcopy(config)
            config.use_cache = True
            kwargs["generation_config"] = config
        return self.__pipetune_wrapped__.generate(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__pipetune_wrapped__(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__pipetune_wrapped__, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("pipetune's CachedGenerate proxy is read-only")

    def __repr__(self) -> str:
        extra = f", prompt_lookup={self._prompt_lookup}" if self._prompt_lookup else ""
        return f"CachedGenerate({type(self.__pipetune_wrapped__).__name__}{extra})"


def hints_for(stage: Stage) -> list[str]:
    """How to declare ``stage`` more fully so the llm changes can apply to it."""
    if is_generate_block(stage):
        return []
    slot = model_slot(stage)
    if slot is not None and not stage.injects(slot):
        return [
            f"stage {stage.name!r}: its function does not take the `{slot}` slot (the model is "
            f"captured another way); accept `{slot}=` as a keyword so pipetune can swap in a "
            "KV-cached or speculative generate"
        ]
    if slot is None and stage.kind == "generate":
        return [
            f"stage {stage.name!r}: declare its `model` slot (a transformers causal LM), or "
            "build it with pipetune.plugins.llm.generate_stage, to unlock the KV cache, "
            "prefix caching, continuous batching and speculative decoding"
        ]
    return []
