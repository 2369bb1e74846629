"""Generate the rule reference in ``docs/scan.md`` from the built-in rules themselves.

``python -m pipetune.scan.docgen docs/scan.md`` rewrites the part between the markers;
``--check`` exits 1 when it is out of date (a test runs it). Each entry: what the rule
finds, why it is slow, the fix, the proposal that applies it, where this repository's
benchmarks measure its effect (or "not yet measured"; the figures themselves are
generated from the benchmark results by ``python -m benchmarks.render``), severity and
confidence.
"""

from __future__ import annotations

import sys
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED: python -m pipetune.scan.docgen docs/scan.md -->"
END = "<!-- END GENERATED -->"

#: Rules whose effect a benchmark in this repository measures, and what it measures. The
#: figures themselves are generated from the benchmark results into the
#: "Measured effects" table of docs/scan.md (``python -m benchmarks.render``), never typed
#: here. Rules not listed here are "not yet measured".
MEASURED: dict[str, str] = {
    "PT-GEN001": "the `queries` demo's classify stage, batched",
    "PT-GEN002": "a result cache on the same demo's classify stage, after batching",
    "PT-HW001": "all-MiniLM-L6-v2 on an NVIDIA GPU",
    "PT-LLM001": "SmolLM2-135M-Instruct with and without a KV cache",
    "PT-LLM003": "continuous against static batching on a mixed request stream",
    "PT-LLM004": "requests sharing long prompt prefixes (time to first token)",
    "PT-NLP001": "the nlp demo's sections through both tokenizers",
    "PT-NLP002": "the nlp demo with dynamic padding alone",
    "PT-NLP004": "the nlp demo with `inference_mode` alone",
    "PT-REC001": "exact numpy top-k against the plugin's ANN index",
    "PT-REC002": "faiss `IndexFlatIP` against the tuned ANN index",
    "PT-VIS001": "the demo's JPEGs, full decode against reduced decode",
    "PT-VIS002": "the demo's camera clips, every frame against the motion gate and a stride",
}
NOT_MEASURED = "not yet measured in this repository's benchmarks"


def render_reference() -> str:
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.scan.ruleset import collect_rules

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
            f"- **Measured effect:** {_measured(rule_id)}.",
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"


def _measured(rule_id: str) -> str:
    where = MEASURED.get(rule_id)
    if where is None:
        return NOT_MEASURED
    return f"{where}: the figure is in [measured effects](#measured-effects)"


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
