"""Plain decode code in a stage's own source, found with the scan rule's matcher.

A stage written as ``Image.open(path).convert("RGB").resize((224, 224))`` (or with
``cv2.imread``, ``imageio``'s ``imread``, ``skimage.io.imread``, followed by a resize)
declares no decoder slot, but ``pipetune scan`` flags the very line (PT-VIS001). This
module runs that rule's matcher (:func:`~.scan_rules.match_decode_resize`) over the
module that defines the stage's function, through the scan engine (so imports and aliases
resolve as in a scan), and keeps the matches inside the function's lines. Nothing is
imported or run: the module's source is read from disk.

A stage whose code decodes but never resizes in the same function (``decode`` returns the
full image, a later stage resizes) is found too: its decode calls are kept with
``resize=None`` and the target size comes from what later stages output.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipetune.plugins.vision import scan_rules
from pipetune.scan.context import DYNAMIC, FileContext, literal

#: Names in a function's code that can start a library decode call.
DECODE_NAMES = frozenset({"imread", "imdecode", "open"})


@dataclass(frozen=True)
class CodeDecode:
    """One library decode call found in a stage's function.

    ``written`` is the name as the code calls it (``Image.open``, ``iio.imread``): what
    pipetune rebinds when it applies reduced decode to the stage. ``size`` is the
    following resize's literal size as (width, height), ``size_name`` the variable it
    reads when not a literal, both ``None`` without a resize in the function.
    ``statement`` is the source of the statement holding the decode call; ``call`` the
    call's own source.
    """

    decoder: str
    written: str
    file: str
    line: int
    statement: str
    call: str
    indent: str
    resized: bool
    size: tuple[int, int] | None = None
    size_name: str | None = None
    order: str = "wh"  # the size reads (width, height); "hw" for scikit-image's shape
    assigned_to: str | None = None  # ``img`` in ``img = Image.open(p)``, if that is all
    chained: bool = False  # the statement is ``x = <decode>.convert(...)...``
    flags: str | None = None  # cv2's flags argument, as written
    path_arg: str | None = None  # the first argument, as written
    simple_call: bool = True  # only the path (and, for OpenCV, its flags) is passed

    @property
    def library(self) -> str:
        return self.decoder.split(".")[0].replace("cv2", "opencv").replace("PIL", "pillow")

    def assigned_target(self) -> str | None:
        """``x`` in ``x = <decode>.convert(...)...``: the name the chain ends in."""
        if not self.chained:
            return None
        head = self.statement.split("=", 1)[0].strip()
        return head if head.isidentifier() else None

    def where(self) -> str:
        return f"{_display(self.file)}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decoder": self.decoder,
            "written": self.written,
            "where": self.where(),
            "statement": self.statement,
            "resized": self.resized,
            "size": list(self.size) if self.size else None,
            "size_name": self.size_name,
        }


def _display(file: str) -> str:
    try:
        return os.path.relpath(file)
    except ValueError:  # another drive (Windows)
        return file


def function_source_range(fn: Any) -> tuple[str, int, int] | None:
    """(file, first line, last line) of ``fn``'s definition, or ``None`` when its source
    is not on disk (a builtin, a function defined in a REPL or by ``exec``)."""
    target = inspect.unwrap(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        call = vars(type(target)).get("__call__")  # a callable object: its method
        if not inspect.isfunction(call):
            return None
        target = call
    try:
        file = inspect.getsourcefile(target)
        lines, first = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return None
    if not file or not os.path.isfile(file):
        return None
    return file, max(first, 1), max(first, 1) + len(lines) - 1


def find_code_decodes(fn: Any) -> list[CodeDecode]:
    """The library decode calls in ``fn``'s own lines, each with its resize when the same
    function resizes the decoded image; empty when the source cannot be read."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    names = _all_names(code) if code is not None else DECODE_NAMES
    if not names & DECODE_NAMES:
        return []
    where = function_source_range(fn)
    if where is None:
        return []
    file, first, last = where
    try:
        mtime = os.stat(file).st_mtime_ns
    except OSError:
        return []
    return [d for d in _module_decodes(file, mtime) if first <= d.line <= last]


def _all_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _all_names(const)
    return names


@lru_cache(maxsize=64)
def _module_decodes(file: str, mtime: int) -> tuple[CodeDecode, ...]:
    """Every decode call in ``file`` (cached per file version)."""
    from pipetune.scan.ruleset import LoadedRule
    from pipetune.scan.scanner import FileScanner

    try:
        source = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ()
    found: list[tuple[scan_rules.DecodeCall, scan_rules.DecodeResize | None]] = []
    drafted: set[int] = set()  # decode calls whose image gets ``draft()``: already reduced

    def collect(node: ast.AST, ctx: FileContext) -> None:
        if isinstance(node, ast.Assign):
            scan_rules.track_assignment(node, ctx)
            return
        assert isinstance(node, ast.Call)
        receiver = ctx.receiver(node)
        if ctx.callee(node) == "draft" and isinstance(receiver, ast.Name):
            known = scan_rules.decoded_names(ctx).get(receiver.id)
            if known is not None:
                drafted.add(id(known.node))
        match = scan_rules.match_decode_resize(node, ctx)
        if match is not None:
            found.append((match.decode, match))
            return
        call = scan_rules.decode_call(node, ctx)
        if call is not None:
            found.append((call, None))

    rule = replace(
        scan_rules.REDUCED_DECODE,
        call_names=frozenset({"resize", "thumbnail", "draft", "imread", "imdecode", "open"}),
        check=collect,
        needs=(),
    )
    scanner = FileScanner({rule.id: LoadedRule("vision", rule)})
    scanner.scan_text(source, Path(file), file)
    return tuple(_merge([f for f in found if id(f[0].node) not in drafted], file, source))


def _merge(
    found: list[tuple[scan_rules.DecodeCall, scan_rules.DecodeResize | None]],
    file: str,
    source: str,
) -> list[CodeDecode]:
    """One record per decode call: with its resize when one was matched."""
    by_call: dict[int, CodeDecode] = {}
    for call, match in found:
        record = _record(call, match, file, source)
        known = by_call.get(id(call.node))
        if known is None or (match is not None and not known.resized):
            by_call[id(call.node)] = record
    return sorted(by_call.values(), key=lambda d: d.line)


def _record(
    call: scan_rules.DecodeCall,
    match: scan_rules.DecodeResize | None,
    file: str,
    source: str,
) -> CodeDecode:
    node = call.node
    statement = call.statement
    stmt_text = (ast.get_source_segment(source, statement) if statement else None) or ""
    line_text = source.splitlines()[node.lineno - 1] if node.lineno else ""
    indent = line_text[: len(line_text) - len(line_text.lstrip())]
    size, size_name = None, None
    if match is not None and match.size is not None:
        value = literal(match.size)
        if isinstance(value, tuple | list) and len(value) in (2, 3):
            pair = value[:2] if match.order == "wh" else (value[1], value[0])
            if all(isinstance(v, int) and v > 0 for v in pair):
                size = (int(pair[0]), int(pair[1]))
        elif value is DYNAMIC and isinstance(match.size, ast.Name):
            size_name = match.size.id
    assigned, chained = None, False
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        if isinstance(target, ast.Name):
            if statement.value is node:
                assigned = target.id
            else:
                chained = True
    flags = None
    if call.decoder.startswith("cv2."):
        flag = node.args[1] if len(node.args) > 1 else FileContext.keyword(node, "flags")
        flags = ast.unparse(flag) if flag is not None else None
    return CodeDecode(
        order=match.order if match is not None else "wh",
        decoder=call.decoder,
        written=call.written,
        file=file,
        line=node.lineno,
        statement=stmt_text,
        call=ast.get_source_segment(source, node) or ast.unparse(node),
        indent=indent,
        resized=match is not None,
        size=size,
        size_name=size_name,
        assigned_to=assigned,
        chained=chained,
        flags=flags,
        path_arg=ast.get_source_segment(source, node.args[0]) if node.args else None,
        simple_call=_simple(call.decoder, node),
    )


def _simple(decoder: str, node: ast.Call) -> bool:
    if decoder.startswith("cv2."):
        return len(node.args) <= 2 and all(k.arg == "flags" for k in node.keywords)
    return len(node.args) == 1 and not node.keywords


# -- the change to make by hand ------------------------------------------------------------

_CV2_FLAGS = {
    None: "COLOR",
    "1": "COLOR",
    "IMREAD_COLOR": "COLOR",
    "0": "GRAYSCALE",
    "IMREAD_GRAYSCALE": "GRAYSCALE",
}


def suggested_change(
    decode: CodeDecode, target: tuple[int, int], factor: int
) -> dict[str, Any] | None:
    """The exact edit that decodes at reduced size, for a decoder pipetune cannot swap:
    ``{"where", "before", "after", "note"}`` (``before``/``after`` are the statement's
    source), or ``None`` when the call takes options this edit would have to guess at.

    Pillow gets ``draft`` before the first use (it picks the scale per image); OpenCV's
    fixed flag uses ``factor``, the largest that keeps every sampled image at least
    ``target``; imageio and scikit-image become the same RGB array from OpenCV."""
    if not decode.simple_call or decode.path_arg is None:
        return None
    width, height = target
    stmt, call, indent = decode.statement, decode.call, decode.indent
    if decode.decoder == "PIL.Image.open":
        draft = f'.draft("RGB", ({width}, {height}))'
        if decode.assigned_to:
            after = f"{stmt}\n{indent}{decode.assigned_to}{draft}"
        else:
            name = decode.assigned_target() or _fresh_name(stmt, "image")
            after = f"{name} = {call}\n{indent}{name}{draft}\n{indent}{stmt.replace(call, name, 1)}"
        note = "Pillow decodes at the largest 1/2, 1/4 or 1/8 scale still at least that size"
    elif decode.decoder.startswith("cv2."):
        kind = _CV2_FLAGS.get(decode.flags.split(".")[-1] if decode.flags else None)
        if kind is None or factor < 2:
            return None
        prefix = decode.written.rsplit(".", 1)[0] if "." in decode.written else "cv2"
        flag = f"{prefix}.IMREAD_REDUCED_{kind}_{factor}"
        after = stmt.replace(call, f"{decode.written}({decode.path_arg}, {flag})", 1)
        note = (
            f"a fixed 1/{factor}: the largest that keeps every sampled image at least "
            f"{width}x{height}"
        )
    else:
        if factor < 2:
            return None
        reduced = (
            f"cv2.cvtColor(cv2.imread({decode.path_arg}, cv2.IMREAD_REDUCED_COLOR_{factor}), "
            "cv2.COLOR_BGR2RGB)"
        )
        after = stmt.replace(call, reduced, 1)
        note = (
            f"the same RGB uint8 array, decoded by OpenCV at 1/{factor} (needs `import cv2`; "
            "for encoded bytes use cv2.imdecode(np.frombuffer(data, np.uint8), ...))"
        )
    return {"where": decode.where(), "before": stmt, "after": after, "note": note}


def _fresh_name(statement: str, preferred: str) -> str:
    name = preferred
    while re.search(rf"\b{re.escape(name)}\b", statement):
        name = f"_{name}"
    return name
