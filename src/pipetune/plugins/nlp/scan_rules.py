"""Static rules of the nlp plugin for ``pipetune scan`` (docs/scan.md has each rule's entry).

Read with ``ast`` only; nothing is imported from the scanned code or from transformers.
"""

from __future__ import annotations

import ast

from pipetune.scan.context import MISSING, FileContext
from pipetune.scan.heuristics import model_call
from pipetune.scan.rules import Finding, Rule

#: transformers' pure-Python tokenizer classes (before v5 the plain names were the slow
#: ones; since v5 they are Rust-backed and the slow ones are called ``*Legacy``).
SLOW_TOKENIZERS_V4 = frozenset(
    {
        "BertTokenizer",
        "DistilBertTokenizer",
        "RobertaTokenizer",
        "GPT2Tokenizer",
        "XLMRobertaTokenizer",
        "T5Tokenizer",
        "AlbertTokenizer",
        "CamembertTokenizer",
        "DebertaTokenizer",
        "DebertaV2Tokenizer",
        "ElectraTokenizer",
        "LlamaTokenizer",
        "BartTokenizer",
        "MPNetTokenizer",
    }
)
GRAD_CONTEXTS = frozenset(
    {
        "torch.no_grad",
        "torch.inference_mode",
        "torch.set_grad_enabled",
        "torch.autograd.no_grad",
        "torch.autograd.grad_mode.no_grad",
        "torch.autograd.grad_mode.inference_mode",
    }
)
INFERENCE_HELPERS = frozenset({"predict", "predict_proba", "encode", "embed", "infer"})
#: Text that marks training code, where gradients are the point.
TRAINING_MARKS = (".backward(", "optimizer", ".train()", "Trainer(", "training_step")


def _tokenizer_class(name: str | None) -> str:
    return (name or "").rsplit(".", 1)[-1]


def check_slow_tokenizer(node: ast.Call, ctx: FileContext) -> Finding | None:
    callee = ctx.callee(node)
    if callee == "from_pretrained":
        cls = _tokenizer_class(ctx.resolve(ctx.receiver(node)))
        if cls.endswith("TokenizerFast"):
            return None
        if ctx.keyword_value(node, "use_fast") is False:
            return ctx.finding(
                node,
                f"{cls or 'the tokenizer'}.from_pretrained(use_fast=False) asks for the "
                "pure-Python tokenizer; the Rust one (tokenizers) encodes batches many times "
                "faster with the same ids",
                confidence=0.9,
            )
    else:
        cls = callee
    if cls.endswith("TokenizerLegacy"):
        return ctx.finding(
            node,
            f"{cls} is transformers' pure-Python tokenizer; the Rust-backed "
            f"{cls.removesuffix('Legacy')} gives the same ids much faster",
            confidence=0.95,
        )
    if cls in SLOW_TOKENIZERS_V4 and _from_transformers(ctx, node):
        return ctx.finding(
            node,
            f"{cls} is the pure-Python tokenizer on transformers < 5 (use {cls}Fast or "
            "AutoTokenizer); on transformers >= 5 this name is already Rust-backed",
            confidence=0.5,
        )
    return None


def _from_transformers(ctx: FileContext, node: ast.Call) -> bool:
    target = ctx.receiver(node) if ctx.callee(node) == "from_pretrained" else node.func
    resolved = ctx.resolve(target) or ""
    return resolved.startswith("transformers.")


SLOW_TOKENIZER = Rule(
    id="PT-NLP001",
    name="slow-tokenizer",
    summary="A pure-Python (slow) tokenizer where a Rust one gives the same ids",
    proposal="nlp.rust_tokenizer",
    node_types=(ast.Call,),
    call_names=frozenset({"from_pretrained", *SLOW_TOKENIZERS_V4})
    | frozenset({f"{name}Legacy" for name in SLOW_TOKENIZERS_V4}),
    check=check_slow_tokenizer,
    confidence=0.9,
    needs=("Tokenizer",),
    description=(
        "transformers' slow tokenizers run WordPiece/BPE in Python, one string at a time. "
        "The Rust tokenizers library produces the same ids and encodes a batch in parallel."
    ),
    fix="AutoTokenizer.from_pretrained(name) (use_fast defaults to True), or the *Fast "
    "class; pipetune verifies the ids match on your inputs before swapping.",
    tags=("tokenizer",),
)


def check_max_length_padding(node: ast.Call, ctx: FileContext) -> Finding | None:
    if ctx.keyword_value(node, "padding") != "max_length":
        return None
    length = ctx.keyword_value(node, "max_length")
    if isinstance(length, int) and length < 64:
        return None  # short fixed shapes are usually deliberate (and cheap)
    size = f" to {length}" if isinstance(length, int) else ""
    return ctx.finding(
        node,
        f'padding="max_length" pads every input{size} tokens: attention and the feed-forward '
        "layers then run over padding; pad each batch to its longest input instead",
        confidence=0.85 if isinstance(length, int) or length is MISSING else 0.7,
    )


MAX_LENGTH_PADDING = Rule(
    id="PT-NLP002",
    name="max-length-padding",
    summary='padding="max_length": every input padded to the maximum length',
    proposal="nlp.dynamic_padding",
    node_types=(ast.Call,),
    check=check_max_length_padding,
    confidence=0.85,
    needs=("max_length",),
    description=(
        "Transformer cost grows with sequence length (attention quadratically). Padding "
        "every input to 512 tokens when most are about 40 makes most of the model's work "
        "padding tokens whose outputs are masked away."
    ),
    fix="padding=True (pad to the longest in the batch), plus length bucketing for mixed lengths.",
    tags=("padding",),
)


def check_eager_attention(node: ast.Call, ctx: FileContext) -> Finding | None:
    value = ctx.keyword_value(node, "attn_implementation")
    if value != "eager":
        return None
    return ctx.finding(
        node,
        'attn_implementation="eager" runs attention as separate matmul/softmax kernels; '
        'PyTorch\'s scaled_dot_product_attention ("sdpa") fuses them',
        confidence=0.9,
    )


EAGER_ATTENTION = Rule(
    id="PT-NLP003",
    name="eager-attention",
    summary='attn_implementation="eager" instead of SDPA',
    proposal="nlp.sdpa_attention",
    node_types=(ast.Call,),
    check=check_eager_attention,
    confidence=0.9,
    needs=("eager",),
    description=(
        "Eager attention materializes the full attention matrix and launches several "
        "kernels; SDPA uses fused (flash / memory-efficient) kernels where available."
    ),
    fix='attn_implementation="sdpa" (the default for most models), unless you need '
    "attention weights as outputs.",
    tags=("attention",),
)


def check_no_inference_mode(node: ast.Call, ctx: FileContext) -> Finding | None:
    # model(x) and model.forward(x) only: encode()/predict() helpers of libraries such as
    # sentence-transformers already turn autograd off inside.
    if model_call(node) is None or ctx.callee(node) in INFERENCE_HELPERS:
        return None
    state = ctx.state
    if "training" not in state:
        state["training"] = any(ctx.mentions(mark) for mark in TRAINING_MARKS) or ctx.mentions(
            "set_grad_enabled(False)"
        )
    if state["training"]:
        return None
    function = ctx.function()
    if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) and (
        function.name == "forward" or "train" in function.name or function.name == "__init__"
    ):
        return None  # a module's own forward, training code, or construction
    if ctx.in_context(GRAD_CONTEXTS):
        return None
    return ctx.finding(
        node,
        "the model runs with autograd on: each call records a graph and keeps activations "
        "for a backward pass that never comes; wrap inference in torch.inference_mode()",
    )


NO_INFERENCE_MODE = Rule(
    id="PT-NLP004",
    name="no-inference-mode",
    summary="Model inference outside torch.inference_mode() / torch.no_grad()",
    proposal="nlp.inference_mode",
    node_types=(ast.Call,),
    check=check_no_inference_mode,
    confidence=0.6,
    needs=("torch",),
    description=(
        "With autograd on, every operation records its inputs for backward: more memory "
        "traffic and allocator work per call, for nothing at inference time."
    ),
    fix="with torch.inference_mode(): around the inference code (or decorate the function "
    "with @torch.inference_mode()).",
    tags=("torch",),
)

RULES: tuple[Rule, ...] = (SLOW_TOKENIZER, MAX_LENGTH_PADDING, EAGER_ATTENTION, NO_INFERENCE_MODE)
