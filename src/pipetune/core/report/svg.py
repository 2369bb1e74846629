"""Inline SVG plots for the HTML report: plain strings, no plotting library, no scripts,
nothing loaded from anywhere (the page must open offline, in any browser)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
OTHER = "#d0d0d0"
BEFORE = "#9c9c9c"
AFTER = "#2f6fb0"


def _nice_ticks(high: float, count: int = 5) -> list[float]:
    if high <= 0 or not math.isfinite(high):
        return [0.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(int(high / step) + 2) if step * i <= high * 1.0001]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def stage_bars(
    bars: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    unit: str = "ms per input",
    width: int = 720,
) -> str:
    """Horizontal stacked bars, one per label, segments = (stage, time) in ``unit``.

    Lengths share one scale, so a faster pipeline's bar is visibly shorter."""
    names: list[str] = []
    for _, segments in bars:
        names += [n for n, _ in segments if n not in names]
    colors = {
        name: (OTHER if name == "other" else PALETTE[i % len(PALETTE)])
        for i, name in enumerate(names)
    }
    left, right, bar_h, gap = 90, 20, 26, 14
    total = max((sum(v for _, v in segments) for _, segments in bars), default=0.0) or 1.0
    scale = (width - left - right) / total
    legend_rows = math.ceil(len(names) / 4)
    height = 20 + len(bars) * (bar_h + gap) + 30 + legend_rows * 18
    out = [_open(width, height, "Stage time before and after")]
    y = 20
    for label, segments in bars:
        out.append(_text(left - 8, y + bar_h * 0.68, label, anchor="end"))
        x = float(left)
        for name, value in segments:
            w = max(0.0, value * scale)
            tip = f"{name}: {_fmt(value)} {unit}"
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colors[name]}"><title>{escape(tip)}</title></rect>'
            )
            x += w
        out.append(_text(x + 4, y + bar_h * 0.68, f"{_fmt(x / scale - left / scale)} {unit}"))
        y += bar_h + gap
    for tick in _nice_ticks(total):
        tx = left + tick * scale
        out.append(f'<line x1="{tx:.1f}" y1="{y - 6}" x2="{tx:.1f}" y2="{y - 2}" stroke="#666"/>')
        out.append(_text(tx, y + 10, _fmt(tick), anchor="middle", size=10))
    y += 28
    for i, name in enumerate(names):
        lx = left + (i % 4) * 150
        ly = y + (i // 4) * 18
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colors[name]}"/>')
        out.append(_text(lx + 14, ly, name, size=11))
    out.append("</svg>")
    return "".join(out)


def cdf(
    curves: Mapping[str, Sequence[float]],
    *,
    width: int = 720,
    height: int = 300,
    x_label: str = "latency (ms)",
) -> str:
    """Cumulative distribution curves; each curve is quantiles 0..100 of a sample."""
    series = {k: list(v) for k, v in curves.items() if v}
    title = "Latency distribution before and after"
    if not series:
        return _no_data(width, height, title, "no latency samples")
    out = [_open(width, height, title)]
    left, right, top, bottom = 56, 20, 14, 42
    high = max(max(v) for v in series.values()) or 1.0
    px = (width - left - right) / high
    py = height - top - bottom
    out.append(_axes(left, top, width - right, height - bottom))
    for tick in _nice_ticks(high):
        x = left + tick * px
        out.append(_text(x, height - bottom + 16, _fmt(tick), anchor="middle", size=10))
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        y = top + py * (1 - q)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(_text(left - 6, y + 4, f"{q:g}", anchor="end", size=10))
    colors = [BEFORE, AFTER, *PALETTE]
    for i, (name, values) in enumerate(series.items()):
        n = len(values) - 1 or 1
        points = " ".join(
            f"{left + v * px:.1f},{top + py * (1 - j / n):.1f}" for j, v in enumerate(values)
        )
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colors[i % len(colors)]}" '
            f'stroke-width="2"><title>{escape(name)}</title></polyline>'
        )
        out.append(
            f'<rect x="{left + 10 + i * 140}" y="{top + 4}" width="12" height="3" '
            f'fill="{colors[i % len(colors)]}"/>'
        )
        out.append(_text(left + 26 + i * 140, top + 10, name, size=11))
    out.append(_text(left + (width - left - right) / 2, height - 6, x_label, anchor="middle"))
    out.append("</svg>")
    return "".join(out)


def throughput_curve(
    series: Mapping[str, Sequence[tuple[int, float]]],
    *,
    width: int = 720,
    height: int = 280,
) -> str:
    """Throughput (requests/s) against concurrency, one line per pipeline."""
    data = {k: sorted(v) for k, v in series.items() if v}
    title = "Throughput against concurrency"
    if not data:
        return _no_data(width, height, title, "no concurrency sweep")
    out = [_open(width, height, title)]
    left, right, top, bottom = 64, 20, 14, 42
    levels = sorted({c for v in data.values() for c, _ in v})
    high = max(t for v in data.values() for _, t in v) or 1.0
    py = (height - top - bottom) / (high * 1.1)

    def x_of(level: int) -> float:
        if len(levels) == 1:
            return left + (width - left - right) / 2
        position = levels.index(level) / (len(levels) - 1)
        return left + position * (width - left - right)

    out.append(_axes(left, top, width - right, height - bottom))
    for level in levels:
        out.append(_text(x_of(level), height - bottom + 16, str(level), anchor="middle", size=10))
    for tick in _nice_ticks(high * 1.1):
        y = height - bottom - tick * py
        out.append(_text(left - 6, y + 4, _fmt(tick), anchor="end", size=10))
    colors = [BEFORE, AFTER, *PALETTE]
    for i, (name, points) in enumerate(data.items()):
        color = colors[i % len(colors)]
        coords = [(x_of(c), height - bottom - t * py) for c, t in points]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), (c, t) in zip(coords, points, strict=True):
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">'
                f"<title>{escape(name)}: {_fmt(t)}/s at concurrency {c}</title></circle>"
            )
        out.append(
            f'<rect x="{left + 10 + i * 140}" y="{top + 4}" width="12" height="3" fill="{color}"/>'
        )
        out.append(_text(left + 26 + i * 140, top + 10, name, size=11))
    out.append(
        _text(
            left + (width - left - right) / 2,
            height - 6,
            "concurrency (requests in flight)",
            anchor="middle",
        )
    )
    out.append("</svg>")
    return "".join(out)


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{escape(title)}</title>"
    )


def _no_data(width: int, height: int, title: str, message: str) -> str:
    """A chart with nothing to plot: its frame and title, and ``message`` in the middle."""
    return (
        _open(width, height, title)
        + _text(width / 2, height / 2, message, anchor="middle")
        + "</svg>"
    )


def _axes(x0: float, y0: float, x1: float, y1: float) -> str:
    return (
        f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#666"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#666"/>'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
        f"{escape(text)}</text>"
    )
