"""Static rules of the hardware plugin (precision, threads, compilation) for ``pipetune scan``.

Read with ``ast`` only; docs/scan.md has each rule's entry. PT-HW002 is a whole-file rule,
reported through the ``scan_file`` hook.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pipetune.scan.context import FileContext, literal
from pipetune.scan.heuristics import looks_like_model
from pipetune.scan.rules import Finding, Rule

#: Text showing the file already chooses a reduced precision somewhere.
PRECISION_MARKS = (
    ".half(",
    "float16",
    "bfloat16",
    "autocast",
    "fp16",
    "bf16",
    "quantiz",
    "torch.amp",
    "cuda.amp",
)


def _moves_to_cuda(node: ast.Call, ctx: FileContext) -> bool:
    callee = ctx.callee(node)
    if callee == "cuda":
        return True
    if callee != "to":
        return False
    candidates = [*node.args[:1], *(kw.value for kw in node.keywords if kw.arg == "device")]
    for arg in candidates:
        value = literal(arg)
        if isinstance(value, str) and value.startswith("cuda"):
            return True
        if isinstance(arg, ast.Call) and ctx.resolve(arg.func) == "torch.device":
            inner = literal(arg.args[0]) if arg.args else None
            if isinstance(inner, str) and inner.startswith("cuda"):
                return True
    return False


def check_fp32_cuda(node: ast.Call, ctx: FileContext) -> None:
    receiver = ctx.receiver(node)
    if receiver is None or not _moves_to_cuda(node, ctx):
        return
    if isinstance(receiver, ast.Call) and ctx.callee(receiver) == "from_pretrained":
        dtype = ctx.keyword(receiver, "torch_dtype") or ctx.keyword(receiver, "dtype")
        if dtype is not None:
            return
        ctx.state.setdefault("moves", []).append((node, 0.75))
    elif looks_like_model(receiver):
        ctx.state.setdefault("moves", []).append((node, 0.6))


def finish_fp32_cuda(ctx: FileContext) -> list[Finding]:
    moves = ctx.state.get("moves", [])
    if not moves or any(ctx.mentions(mark) for mark in PRECISION_MARKS):
        return []
    return [
        ctx.finding(
            node,
            f"{ast.unparse(node.func.value)} runs on CUDA in fp32 and nothing in this file "
            "selects fp16/bf16 or autocast: tensor cores run half precision several times "
            "faster",
            confidence=confidence,
        )
        for node, confidence in moves
    ]


FP32_CUDA = Rule(
    id="PT-HW001",
    name="fp32-inference-on-cuda",
    summary="A model moved to CUDA with no reduced precision anywhere in the file",
    proposal="hardware.precision",
    node_types=(ast.Call,),
    call_names=frozenset({"cuda", "to"}),
    check=check_fp32_cuda,
    finish=finish_fp32_cuda,
    confidence=0.6,
    needs=("cuda",),
    description=(
        "On NVIDIA GPUs since Volta, fp16/bf16 matrix multiplies run on tensor cores at "
        "several times the fp32 rate and halve memory traffic. A model left in fp32 uses "
        "neither."
    ),
    fix="torch.autocast('cuda', dtype=torch.bfloat16) around inference, or load the model "
    "with torch_dtype=torch.float16; pipetune measures the fidelity cost before keeping it.",
    tags=("gpu", "precision"),
)

POOL_CALLS = frozenset({"ProcessPoolExecutor", "Pool", "Process"})
#: A cheap text test first: most files start no processes.
_POOL_TEXT = re.compile(r"\b(ProcessPoolExecutor|Pool|Process)\s*\(")


def scan_threads(path: Path, tree: ast.Module, source: str) -> list[Finding]:
    """Whole file: torch in a file that starts worker processes, without a thread count."""
    if "torch" not in source or "set_num_threads" in source or "NUM_THREADS" in source:
        return []
    if _POOL_TEXT.search(source) is None or not _imports_torch(tree):
        return []
    pools = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and FileContext.callee(node) in POOL_CALLS
    ]
    if not pools:
        return []
    first = min(pools, key=lambda n: (n.lineno, n.col_offset))
    return [
        Finding(
            rule=THREADS.id,
            path=str(path),
            line=first.lineno,
            col=first.col_offset + 1,
            message=(
                f"{FileContext.callee(first)}(...) starts worker processes in a file that uses "
                "torch, and torch.set_num_threads is never called: each worker starts one "
                "intra-op thread per core, so N workers oversubscribe the CPU N-fold"
            ),
        )
    ]


def _imports_torch(tree: ast.Module) -> bool:
    """A top-level ``import torch`` / ``from torch... import`` (where imports live)."""
    for node in tree.body:
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "torch" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            return True
    return False


THREADS = Rule(
    id="PT-HW002",
    name="thread-oversubscription",
    summary="torch in worker processes without torch.set_num_threads",
    proposal="hardware.threads",
    severity="note",
    confidence=0.5,
    description=(
        "torch (and OpenMP/MKL under it) sizes its thread pool to every core in each "
        "process. Several processes each using every core contend for the same cores: "
        "context switches and cache thrash instead of speed."
    ),
    fix="torch.set_num_threads(cores // workers) in each worker (pipetune pins and "
    "records thread counts for you).",
    tags=("threads", "cpu"),
)

SLOW_ORT_LEVELS = frozenset({"ORT_DISABLE_ALL", "ORT_ENABLE_BASIC"})


def check_ort_level(node: ast.Attribute, ctx: FileContext) -> Finding | None:
    if node.attr not in SLOW_ORT_LEVELS:
        return None
    level = "disabled" if node.attr == "ORT_DISABLE_ALL" else "basic only"
    return ctx.finding(
        node,
        f"ONNX Runtime graph optimizations {level} ({node.attr}): node fusions (attention, "
        "GELU, LayerNorm) and constant folding are skipped; ORT_ENABLE_ALL is the default",
        confidence=0.9,
    )


ORT_NO_GRAPH_OPT = Rule(
    id="PT-HW003",
    name="onnxruntime-graph-optimizations-off",
    summary="ONNX Runtime session with graph optimizations disabled or basic",
    proposal="hardware.compile",
    node_types=(ast.Attribute,),
    check=check_ort_level,
    confidence=0.9,
    needs=tuple(SLOW_ORT_LEVELS),
    description=(
        "ONNX Runtime's extended and layout optimizations fuse transformer subgraphs into "
        "single kernels. Turning them off (often left over from debugging) runs the graph "
        "node by node."
    ),
    fix="leave graph_optimization_level at ORT_ENABLE_ALL (or let pipetune's hardware "
    "plugin export and tune the session).",
    tags=("onnxruntime",),
)

RULES: tuple[Rule, ...] = (FP32_CUDA, THREADS, ORT_NO_GRAPH_OPT)


def scan_file(path: Path, tree: ast.Module, source: str) -> list[Finding] | None:
    """Whole-file findings: thread settings (what ``scan_file`` returns for this plugin)."""
    return scan_threads(path, tree, source) or None
