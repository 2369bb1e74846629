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
    "PT-REC001": (
        "exact numpy top-100 over a 20,000 x 128 catalog: 1.44 ms a query; HNSW (efSearch "
        "100, exact re-rank) 0.19 ms at held-out recall@100 0.993: **7.4x** "
        "(`python -m benchmarks.recsys.run`, `benchmarks/results/recsys.json`, 2-core "
        "AMD EPYC, shared)"
    ),
    "PT-REC002": (
        "faiss IndexFlatIP (1 thread) over the same 20,000 x 128 catalog: 0.38 ms a query; "
        "HNSW at recall@100 0.993: **2.0x** (`benchmarks/results/recsys.json`); the gap "
        "grows with the catalog"
    ),
    "PT-VIS001": (
        "960x720 JPEGs for a 64x64 model: OpenCV full decode + resize 30.5 ms, "
        "IMREAD_REDUCED 11.5 ms (**2.6x**); Pillow 40.7 ms vs draft() 15.5 ms (**2.6x**); "
        "label agreement 1.0 (`python -m benchmarks.vision.decode --quick`, "
        "`benchmarks/results/vision.json`, a quick run)"
    ),
}
NOT_MEASURED = "not yet measured in this repository's benchmarks"


def render_reference() -> str:
    from pipetune.core.manager import get_plugin_manager
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
