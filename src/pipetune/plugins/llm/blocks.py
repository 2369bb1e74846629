"""The llm plugin's building blocks: a prompt (tokenize) stage and a generate stage.

A pipeline declared with them gets every optimization of the plugin::

    from pipetune.plugins.llm import prompt_stage, generate_stage
    pipeline = Pipeline("chat", [prompt_stage(tokenizer), generate_stage(model, tokenizer)],
                        output_kind="tokens")

The generate stage's components are slots: ``model`` (a transformers causal LM),
``tokenizer``, ``config`` (a :class:`GenerateConfig`: KV cache, batching, speculation...),
and optionally ``draft_model`` and ``prefix_cache``. Every transformation replaces a slot
(usually ``config``), so the user's model is never touched.

Inputs to the prompt stage: a string (one user turn), a dict ``{"prompt": ..., "system":
..., "max_new_tokens": ..., "id": ...}`` or ``{"messages": [...]}`` (see
:mod:`pipetune.plugins.llm.traffic`), or already-encoded ``{"prompt_ids": [...]}``.
The generate stage outputs a :class:`Generation` (token ids, finish reason, per-request
error message).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Stage
from pipetune.plugins.llm.records import GenerateConfig, Generation, GenerationRequest

GENERATE_BLOCK = "llm.generate"
PROMPT_BLOCK = "llm.prompt"

_ENGINES: OrderedDict[tuple[int, ...], Any] = OrderedDict()
_MAX_ENGINES = 16


def _messages(item: Mapping[str, Any]) -> list[dict[str, str]]:
    if "messages" in item:
        messages = item["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, Mapping) and "role" in m and "content" in m for m in messages
        ):
            raise ConfigError("'messages' must be a list of {'role': ..., 'content': ...}")
        return [dict(m) for m in messages]
    if "prompt" not in item:
        raise ConfigError(
            f"a request needs 'prompt', 'messages' or 'prompt_ids' (got keys {sorted(item)})"
        )
    messages = []
    if item.get("system"):
        messages.append({"role": "system", "content": str(item["system"])})
    messages.append({"role": "user", "content": str(item["prompt"])})
    return messages


def _apply_template(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    template = getattr(tokenizer, "apply_chat_template", None)
    if callable(template) and (
        getattr(tokenizer, "chat_template", None) is not None
        or not hasattr(tokenizer, "chat_template")
    ):
        ids = template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return [int(t) for t in ids]
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return [int(t) for t in tokenizer.encode(text)]


def encode_request(item: Any, tokenizer: Any, *, chat_template: bool = True) -> GenerationRequest:
    """A :class:`GenerationRequest` for any supported input form."""
    if isinstance(item, GenerationRequest):
        return item
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, Mapping):
        raise ConfigError(
            f"cannot make a generation request from {type(item).__name__}: give a string, "
            "a dict with 'prompt' / 'messages' / 'prompt_ids', or a GenerationRequest"
        )
    budget = item.get("max_new_tokens")
    ident = item.get("id")
    if "prompt_ids" in item:
        return GenerationRequest(tuple(item["prompt_ids"]), budget, ident)
    messages = _messages(item)
    if chat_template:
        ids = _apply_template(tokenizer, messages)
    else:
        ids = [int(t) for t in tokenizer.encode("\n".join(m["content"] for m in messages))]
    text = messages[-1]["content"]
    return GenerationRequest(tuple(ids), budget, None if ident is None else str(ident), text=text)


def tokenize_request(item: Any, *, tokenizer: Any, chat_template: bool = True) -> GenerationRequest:
    """The prompt stage's function."""
    return encode_request(item, tokenizer, chat_template=chat_template)


def engine_for(
    model: Any,
    config: GenerateConfig,
    tokenizer: Any = None,
    draft_model: Any = None,
    prefix_cache: Any = None,
) -> Any:
    """The :class:`Engine` for these components (kept, so a CUDA graph or a draft model
    built once is reused across calls)."""
    from pipetune.plugins.llm.engine import Engine

    if not isinstance(config, GenerateConfig):
        config = GenerateConfig.from_dict(config) if isinstance(config, Mapping) else config
    if not isinstance(config, GenerateConfig):
        raise ConfigError(f"the generate stage's config must be a GenerateConfig, got {config!r}")
    key = (id(model), id(config), id(tokenizer), id(draft_model), id(prefix_cache))
    engine = _ENGINES.get(key)
    if engine is None:
        engine = Engine(
            model, config, tokenizer=tokenizer, draft_model=draft_model, prefix_cache=prefix_cache
        )
        _ENGINES[key] = engine
        while len(_ENGINES) > _MAX_ENGINES:
            _ENGINES.popitem(last=False)
    else:
        _ENGINES.move_to_end(key)
    return engine


def generate(
    request: Any,
    *,
    model: Any,
    config: GenerateConfig,
    tokenizer: Any = None,
    draft_model: Any = None,
    prefix_cache: Any = None,
) -> Generation:
    """The generate stage's function: one request."""
    engine = engine_for(model, config, tokenizer, draft_model, prefix_cache)
    return engine.generate(encode_request(request, tokenizer))


def serve(
    feed: Any,
    *,
    model: Any,
    config: GenerateConfig,
    tokenizer: Any = None,
    draft_model: Any = None,
    prefix_cache: Any = None,
) -> Iterator[Any]:
    """The generate stage's stream server (``pipetune.core.runtime.stream`` protocol, version 1):
    requests are served as they arrive under the configured batching policy, one
    ``StreamEvent`` per produced token and one ``done`` event per request."""
    from pipetune.plugins.llm.scheduler import serve_requests

    engine = engine_for(model, config, tokenizer, draft_model, prefix_cache)
    yield from serve_requests(engine, feed)


# the runtime finds a stream-capable stage through ``fn.serve``
generate.serve = serve  # type: ignore[attr-defined]


def generate_batch(
    requests: Sequence[Any],
    *,
    model: Any,
    config: GenerateConfig,
    tokenizer: Any = None,
    draft_model: Any = None,
    prefix_cache: Any = None,
) -> list[Generation]:
    """The generate stage's batch function: every request of ``requests`` arrived at
    once, served under the configured batching policy (continuous batching fills freed
    rows at every step)."""
    engine = engine_for(model, config, tokenizer, draft_model, prefix_cache)
    return engine.generate_many([encode_request(r, tokenizer) for r in requests])


def prompt_stage(tokenizer: Any, *, name: str = "prompt", chat_template: bool = True) -> Stage:
    """A stage turning requests (strings or dicts) into token ids with the chat template."""
    return Stage(
        name,
        tokenize_request,
        kind="tokenize",
        slots={"tokenizer": tokenizer, "chat_template": chat_template},
        meta={"block": PROMPT_BLOCK},
    )


def generate_stage(
    model: Any,
    tokenizer: Any = None,
    *,
    name: str = "generate",
    config: GenerateConfig | None = None,
    draft_model: Any = None,
    **options: Any,
) -> Stage:
    """A greedy generate stage over ``model``. ``options`` are :class:`GenerateConfig`
    fields (``max_new_tokens=128``, ``use_cache=False``...)."""
    if config is None:
        config = GenerateConfig(**options)
    elif options:
        config = config.evolve(**options)
    slots: dict[str, Any] = {"model": model, "tokenizer": tokenizer, "config": config}
    if draft_model is not None:
        slots["draft_model"] = draft_model
    if config.prefixes:
        from pipetune.plugins.llm.prefix_cache import PrefixCache

        slots["prefix_cache"] = PrefixCache(config.prefixes)
    return Stage(
        name,
        generate,
        kind="generate",
        slots=slots,
        batch_fn=generate_batch,
        output_kind="tokens",
        meta={"block": GENERATE_BLOCK},
    )


def is_generate_block(stage: Stage) -> bool:
    return stage.meta.get("block") == GENERATE_BLOCK and isinstance(
        stage.slots.get("config"), GenerateConfig
    )


def stage_engine(stage: Stage) -> Any:
    """The engine a generate building block runs."""
    slots = stage.slots
    return engine_for(
        slots["model"],
        slots["config"],
        slots.get("tokenizer"),
        slots.get("draft_model"),
        slots.get("prefix_cache"),
    )
