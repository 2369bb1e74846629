"""Generate the rule reference in ``docs/scan.md`` from the built-in rules themselves.

``python -m pipetune.scan.docgen docs/scan.md`` rewrites the part between the markers;
``--check`` exits 1 when it is out of date (a test runs it). Each entry: what the rule
finds, why it is slow, the fix, the proposal that applies it, the measured effect from
this repository's benchmarks (or "not yet measured"), severity and confidence.
"""

from __future__ import annotations

import sys
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED: python -m pipetune.scan.docgen docs/scan.md -->"
END = "<!-- END GENERATED -->"

#: Measured effects, from benchmarks in this repository (figures, file and command). Rules
#: not listed here are "not yet measured".
MEASURED: dict[str, str] = {
    "PT-GEN001": (
        "the `queries` demo's classify stage called once per query, batched to 64: "
        "**4.13x** end to end [3.34, 4.93], outputs identical (`python -m "
        "benchmarks.loop.demo_queries`, docs/benchmarks/loop.md)"
    ),
    "PT-GEN002": (
        "a result cache on the same demo's classify stage, after batching: **1.20x** "
        "[1.06, 1.34] at the workload's own repeat rate (docs/benchmarks/loop.md)"
    ),
    "PT-HW001": (
        "all-MiniLM-L6-v2 on an H200, batch 1: fp16/bf16 alone **0.60-0.62x** eager fp32 "
        "(launch-bound); with torch.compile + CUDA graphs **3.8x** (fp16) and **5.3x** "
        "(bf16), labels 100 % (`python -m benchmarks.hardware.gpu`, docs/benchmarks/hardware.md)"
    ),
    "PT-LLM001": (
        "SmolLM2-135M-Instruct, 256 new tokens, batch 1, one CPU thread: no cache 1.81 "
        "tokens/s, KV cache 16.6 (**9.2x**; transformers' `generate` 13.6), tokens "
        "identical (`python -m benchmarks.llm.run`, docs/benchmarks/llm.md)"
    ),
    "PT-LLM003": (
        "96 mixed-length requests at once, batches of 8: continuous batching **2.02x** "
        "static batching's tokens/s (2.12x while requests waited) with P99 2.05x lower; "
        "on 48 requests 1.80x, and **2.4x** one request at a time (docs/benchmarks/llm.md)"
    ),
    "PT-LLM004": (
        "16 requests sharing 83- and 23-token prefixes: time to first token p50 322 -> 127 "
        "ms (**2.5x** lower), tokens identical (docs/benchmarks/llm.md)"
    ),
    "PT-NLP001": (
        "the nlp demo's 1,596 sections: `BertTokenizerLegacy` one call per section 1,584 "
        "sections/s, the Rust tokenizer's `encode_batch` 13,028 (**9.3x**; 4.7x per "
        "CPU-second), ids identical (`python -m benchmarks.nlp.run`, docs/benchmarks/nlp.md)"
    ),
    "PT-NLP002": (
        "the nlp demo (sections average 73 tokens, padded to 512): dynamic padding alone "
        "**6.3x** end to end, 100 % label agreement (`python -m benchmarks.nlp.run`, "
        "docs/benchmarks/nlp.md)"
    ),
    "PT-NLP004": (
        "the nlp demo: `inference_mode` instead of `no_grad` alone **0.96x** (within "
        "noise): the planner ranks it low for that reason (docs/benchmarks/nlp.md)"
    ),
    "PT-REC001": (
        "exact numpy top-100 over a 500,000 x 128 catalog: 21.36 ms a query; the plugin's "
        "IVF2048,Flat (nprobe 28, exact distances) 0.23 ms at held-out recall@100 0.968: "
        "**92x** (`python -m benchmarks.recsys.run`, docs/benchmarks/recsys.md)"
    ),
    "PT-REC002": (
        "faiss IndexFlatIP (1 thread) over the same 500,000 x 128 catalog: 11.19 ms a "
        "query; the tuned IVF-Flat index at recall@100 0.968: **48x** "
        "(docs/benchmarks/recsys.md)"
    ),
    "PT-VIS001": (
        "120 generated 4000x3000 photos for a 224x224 classifier: OpenCV full decode + "
        "resize against IMREAD_REDUCED_COLOR_8 **4.34x**, labels 100 % in agreement, PSNR "
        "46 dB (`python -m benchmarks.vision.decode`, docs/benchmarks/vision.md)"
    ),
    "PT-VIS002": (
        "camera clips with 7 events: a fixed stride of 3 **2.97x** at 98.9 % per-frame "
        "agreement; the motion gate **8.60x** at 99.0 %, every event within 3 frames "
        "(`python -m benchmarks.vision.frame_skip`, docs/benchmarks/vision.md)"
    ),
}
NOT_MEASURED = "not yet measured in this repository's benchmarks"


def render_reference() -> str:
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.scan.engine import collect_rules

    ruleset = collect_rules(get_plugin_manager(entry_points=False, strict=False))
    parts = [
        "| id | name | plugin | severity | confidence | fixed by |",
        "|---|---|---|---|---|---|",
    ]
    for rule_id, loaded in sorted(ruleset.rules.items()):
        rule = loaded.rule
        parts.append(
            f"| [{rule_id}](#{rule_id.lower()}) | `{rule.name}` | {loaded.plugin} | "
            f"{rule.severity} | {rule.confidence:g} | `{rule.proposal}` |"
        )
    parts.append("")
    for rule_id, loaded in sorted(ruleset.rules.items()):
        rule = loaded.rule
        hook = "scan_file" if not rule.node_types and rule.finish is None else "scan_rules"
        parts += [
            f"### {rule_id}",
            "",
            f"**{rule.name}** — {rule.summary}. Plugin `{loaded.plugin}` ({hook}); "
            f"severity {rule.severity}, confidence {rule.confidence:g}.",
            "",
            f"- **Why it is slow:** {rule.description}",
            f"- **Fix:** {rule.fix}",
            f"- **Proposal:** `{rule.proposal}` (`pipetune propose` / `pipetune optimize` "
            "measure it on your workload).",
            f"- **Measured effect:** {MEASURED.get(rule_id, NOT_MEASURED)}.",
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"


def update(path: Path, *, check: bool = False) -> bool:
    """Rewrite the generated part of ``path``; returns whether it changed (or would)."""
    text = path.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{render_reference()}{END}{tail}"
    if new == text:
        return False
    if not check:
        path.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"] or ["docs/scan.md"]
    changed = update(Path(paths[0]), check=check)
    if check and changed:
        print(f"{paths[0]} is out of date: run python -m pipetune.scan.docgen {paths[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
