"""What plugins give ``pipetune scan``: :class:`Rule` objects and :class:`Finding` records.

A plugin's ``scan_rules`` hook returns rules; each names the AST node types it inspects
(and, for calls, the callee names), so the engine parses a file once, walks it once and
calls a rule only on the nodes it asked for::

    from pipetune import hookimpl
    from pipetune.scan import FileContext, Rule


    def _check(node: ast.Call, ctx: FileContext):
        if ctx.keyword_value(node, "use_cache") is False:
            return ctx.finding(node, "generate() without the KV cache")


    USE_CACHE_OFF = Rule(
        id="PT-LLM001",
        name="generate-without-kv-cache",
        summary="generate(use_cache=False) recomputes attention over the whole prefix",
        proposal="llm.kv_cache",
        node_types=(ast.Call,),
        call_names=frozenset({"generate"}),
        check=_check,
    )


    @hookimpl
    def scan_rules():
        return [USE_CACHE_OFF]

``check(node, ctx)`` returns a :class:`Finding` (build it with ``ctx.finding``), an
iterable of them, or ``None``. A rule that needs the whole file collects what it saw in
``ctx.state`` and reports from ``finish(ctx)``, called once after the walk. Rules never
import or run the scanned code: they see its syntax tree and its text.

Forward compatibility: a rule records the plugin API it was written for (``api``). A rule
built for a newer API than this pipetune's is skipped and reported, not half-run; rule
objects that are not this class but carry the same attributes (a plugin built against
another pipetune release) are accepted through :func:`coerce_rule`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import PluginError
from pipetune.core.kernel.hookspecs import API_VERSION

if TYPE_CHECKING:
    from pipetune.scan.context import FileContext

#: Severities, lowest first. SARIF's ``level`` uses the same words.
SEVERITIES: tuple[str, ...] = ("note", "warning", "error")
#: ``PT-NLP001``; third-party rules use their own prefix (``ACME001``, ``XYZ-IO3``).
RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z][A-Z0-9]*)*[0-9]+$")

# A check is called on the node types its rule names (``node_types``), so it may take a
# narrower node type (``ast.Call``) than ``ast.AST``.
CheckFn = Callable[[Any, "FileContext"], "Finding | Iterable[Finding] | None"]
FinishFn = Callable[["FileContext"], "Finding | Iterable[Finding] | None"]


class RuleError(PluginError):
    """A rule object that breaks the contract (bad id, severity, node types, newer API)."""


def severity_rank(severity: str) -> int:
    """0 for ``note``, 1 for ``warning``, 2 for ``error``."""
    return SEVERITIES.index(severity)


def confidence_label(confidence: float) -> str:
    """``high`` (>= 0.8), ``medium`` (>= 0.5) or ``low``: what a number means to a reader."""
    if confidence >= 0.8:
        return "high"
    if confidence >= 0.5:
        return "medium"
    return "low"


@dataclass(frozen=True)
class Finding:
    """One place in one file where a rule fired.

    ``line`` and ``col`` are 1-based (``col`` counts characters, as editors do);
    ``severity``, ``confidence`` and ``proposal`` default to the rule's. The engine fills
    ``plugin``, ``snippet`` and ``fingerprint``: a hash of the rule, the file and the
    whitespace-normalized source line, stable across runs and unaffected by lines added
    or removed elsewhere, so code scanning recognizes the same finding again.
    """

    rule: str
    path: str
    line: int
    message: str
    col: int = 1
    end_line: int | None = None
    end_col: int | None = None
    severity: str | None = None
    confidence: float | None = None
    proposal: str | None = None
    plugin: str = ""
    snippet: str = ""
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class Rule:
    """A static rule: what it looks for, why it is slow, and the proposal that fixes it.

    Args:
        id: stable, unique across plugins (``PT-NLP001``); ``--select``/``--ignore``,
            inline ``# pipetune: ignore[ID]`` and SARIF use it. Never reuse a retired id.
        name: a short kebab-case name (``slow-tokenizer``).
        summary: one line: what the rule finds.
        proposal: the id of the proposal that fixes it (``nlp.rust_tokenizer``), so a
            scan in CI can be followed by a measured ``pipetune optimize``.
        node_types: the AST node classes ``check`` is called on. Empty for a rule whose
            findings come from ``finish`` or from the plugin's ``scan_file`` hook (the
            rule is then declared for ``--select``, the docs and SARIF).
        check: ``check(node, ctx)``; see the module docstring.
        call_names: for ``ast.Call``: call ``check`` only when the callee's last name
            (``generate`` in ``model.generate(...)``) is one of these. The engine indexes
            rules by it, so rules about rare calls cost nothing on other calls.
        finish: ``finish(ctx)``, called once per file after the walk.
        severity: ``note``, ``warning`` or ``error``.
        confidence: 0-1, how sure the rule is when it fires. Static analysis cannot
            know how large a matrix is or what a name holds at run time: say so here.
        needs: substrings of which the source must contain at least one for the rule to
            run on a file (``("faiss",)``): a cheap pre-filter.
        description: why the code is slow (the documentation entry; SARIF ``help``).
        fix: what to do instead.
        tags: free-form tags (``gpu``, ``tokenizer``).
        api: the plugin API version the rule was written against.
    """

    id: str
    name: str
    summary: str
    proposal: str
    node_types: tuple[type[ast.AST], ...] = ()
    check: CheckFn | None = None
    call_names: frozenset[str] = frozenset()
    finish: FinishFn | None = None
    severity: str = "warning"
    confidence: float = 0.8
    needs: tuple[str, ...] = ()
    description: str = ""
    fix: str = ""
    tags: tuple[str, ...] = ()
    api: int = API_VERSION

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise RuleError(f"rule {self.id!r}: " + "; ".join(problems))
        object.__setattr__(self, "node_types", tuple(self.node_types))
        object.__setattr__(self, "call_names", frozenset(self.call_names))
        object.__setattr__(self, "needs", tuple(self.needs))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "confidence", float(self.confidence))

    @property
    def confidence_label(self) -> str:
        return confidence_label(self.confidence)

    def describe(self) -> dict[str, Any]:
        """The rule's metadata as JSON (``pipetune scan --list-rules --format json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "summary": self.summary,
            "proposal": self.proposal,
            "severity": self.severity,
            "confidence": self.confidence,
            "node_types": [t.__name__ for t in self.node_types],
            "call_names": sorted(self.call_names),
            "description": self.description,
            "fix": self.fix,
            "tags": list(self.tags),
            "api": self.api,
        }


def _problems(rule: Any) -> list[str]:
    """Every way the rule is malformed, in a fixed order; empty when it is valid."""
    return [*_description_problems(rule), *_matching_problems(rule)]


def _description_problems(rule: Any) -> list[str]:
    """What is wrong with how the rule describes itself: id, name, proposal, severity,
    confidence."""
    problems = []
    if not isinstance(rule.id, str) or not RULE_ID.match(rule.id):
        problems.append(
            f"id must look like 'PT-NLP001' (capitals, digits, dashes, ending in a number), "
            f"got {rule.id!r}"
        )
    if not isinstance(rule.name, str) or not rule.name:
        problems.append("name must be a non-empty string")
    if not isinstance(rule.proposal, str) or "." not in rule.proposal:
        problems.append(
            f"proposal must be a proposal id like 'nlp.rust_tokenizer', got {rule.proposal!r}"
        )
    if rule.severity not in SEVERITIES:
        problems.append(f"severity must be one of {', '.join(SEVERITIES)}, got {rule.severity!r}")
    if not 0.0 <= _as_float(rule.confidence) <= 1.0:
        problems.append(f"confidence must be between 0 and 1, got {rule.confidence!r}")
    return problems


def _as_float(value: Any) -> float:
    """``value`` as a float, or -1.0 (out of any range) if it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return -1.0


def _matching_problems(rule: Any) -> list[str]:
    """What is wrong with how the rule matches code: node types, check, finish, call names,
    needs."""
    problems = []
    node_types = tuple(rule.node_types or ())
    bad = [t for t in node_types if not (isinstance(t, type) and issubclass(t, ast.AST))]
    if bad:
        problems.append(f"node_types must be ast node classes, got {bad!r}")
    if node_types and not callable(rule.check):
        problems.append("a rule with node_types needs a check(node, ctx) function")
    if rule.finish is not None and not callable(rule.finish):
        problems.append("finish must be callable")
    if rule.call_names and ast.Call not in node_types:
        problems.append("call_names applies to ast.Call rules only")
    if isinstance(rule.needs, str):
        problems.append("needs must be a tuple of strings, not one string")
    return problems


def coerce_rule(obj: Any, plugin: str) -> Rule:
    """``obj`` as a :class:`Rule`, or :class:`RuleError` saying clearly why not.

    Accepts this class, and objects with the same attributes (a rule class from another
    pipetune release); attributes this release does not know are ignored. A rule built
    for a newer plugin API than :data:`~pipetune.core.kernel.hookspecs.API_VERSION` is refused
    with a message naming the plugin and both versions.
    """
    ident = getattr(obj, "id", None)
    label = f"rule {ident!r} from plugin {plugin!r}" if ident else f"a rule from plugin {plugin!r}"
    api = getattr(obj, "api", API_VERSION)
    try:
        api = int(api)
    except (TypeError, ValueError):
        raise RuleError(f"{label}: api must be an integer, got {api!r}") from None
    if api > API_VERSION:
        raise RuleError(
            f"{label} is built for pipetune plugin API {api}, but this pipetune provides API "
            f"{API_VERSION}: skipped (upgrade pipetune, or use an older release of the plugin)"
        )
    if isinstance(obj, Rule):
        return obj
    wanted = {f.name for f in fields(Rule)}
    missing = [name for name in ("id", "name", "summary", "proposal") if not hasattr(obj, name)]
    if missing:
        raise RuleError(
            f"{label} is a {type(obj).__name__}, not a pipetune Rule: it lacks {', '.join(missing)}"
        )
    values = {name: getattr(obj, name) for name in wanted if hasattr(obj, name)}
    try:
        return Rule(**values)
    except RuleError as exc:
        raise RuleError(f"{label}: {exc}") from None
    except TypeError as exc:
        raise RuleError(f"{label}: {exc}") from None


def as_findings(value: Any) -> list[Finding]:
    """Normalize what ``check``/``finish``/``scan_file`` returned to a list of findings.

    Raises :class:`TypeError` naming what came back instead, so the engine can report the
    plugin that broke the contract.
    """
    if value is None:
        return []
    if isinstance(value, Finding):
        return [value]
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise TypeError(f"expected a Finding or a list of them, got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, Finding):
            raise TypeError(f"expected Finding objects, got {type(item).__name__}")
        out.append(item)
    return out


@dataclass(frozen=True)
class RuleProblem:
    """A plugin's rule that could not be used, or that raised while scanning."""

    plugin: str
    rule: str
    error: str
    path: str = ""
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = f" on {self.path}" + (f":{self.line}" if self.line else "") if self.path else ""
        what = f"rule {self.rule}" if self.rule else "scan_file"
        return f"plugin {self.plugin!r} {what}{where}: {self.error}"
