"""Differential flame graphs: a self-contained HTML page and a static SVG.

Frame widths are AFTER's shares; a frame is red when its stack's share grew,
blue when it shrank (deeper for larger changes), purple when the stack is
only in AFTER, grey and dashed when only in BEFORE (the page shows those on
request, the SVG never). The page has no network access, as ``view``'s.
"""

from __future__ import annotations

import html
from typing import Dict, List, Sequence

from otel_profiling.cli.compare import FunctionChange, UnionTree
from otel_profiling.cli.flamegraph import inline_page, location

SAME = 0.001
"""A stack whose share moved less than this (0.1 points) is drawn as unchanged."""

MIN_SCALE = 0.01
"""The change drawn in full colour is the largest one, and at least one point."""

TABLE_ROWS = 500

PALETTE = {"new": "hsl(275,65%,72%)", "gone": "hsl(0,0%,86%)", "same": "hsl(40,8%,88%)"}
HUES = {"grew": 0, "shrank": 215}
"""Colours of the page and the SVG: fixed ones, and the hues of changes (lighter when small)."""


def status(after: float, before: float) -> str:
    if before == 0 and after > 0:
        return "new"
    if after == 0 and before > 0:
        return "gone"
    if abs(after - before) < SAME:
        return "same"
    return "grew" if after > before else "shrank"


def render_diff_html(
    union: UnionTree, changes: Sequence[FunctionChange], title: str, subtitle: str
) -> str:
    names: Dict[str, int] = {}
    locs: Dict[str, int] = {"": 0}
    n: List[int] = []
    loc: List[int] = []
    for frame in union.frames:
        n.append(names.setdefault(frame.function, len(names)))
        loc.append(locs.setdefault(location(frame), len(locs)))

    def shares(values: List[float]) -> List[float]:
        return [round(v, 7) for v in values]

    data = {
        "names": list(names),
        "locs": list(locs),
        "n": n,
        "l": loc,
        "p": union.parents,
        "a": shares(union.after),
        "b": shares(union.before),
        "g": shares(union.gone),
        "as": shares(union.after_self),
        "bs": shares(union.before_self),
        "fns": [
            [c.name, c.file, round(c.before, 7), round(c.after, 7), round(c.delta, 7)]
            for c in changes[:TABLE_ROWS]
        ],
        "same": SAME,
        "scale": MIN_SCALE,
        "palette": PALETTE,
        "hues": HUES,
    }
    return inline_page(
        "diff.html",
        title,
        subtitle,
        data,
        ["graph.js", "diffgraph.js"],
        ["flamegraph.css", "diffgraph.css"],
    )


def _fill(after: float, before: float, scale: float) -> str:
    kind = status(after, before)
    if kind in PALETTE:
        return PALETTE[kind]
    light = 88 - 30 * min(1.0, abs(after - before) / scale)
    return f"hsl({HUES[kind]},75%,{light:.0f}%)"


def render_diff_svg(union: UnionTree, title: str, subtitle: str, width: int = 1200) -> str:
    """AFTER's stacks (root on top), coloured by change; tooltips give both shares."""
    row, top_margin, char_px = 18, 46, 7.0
    scale = max(
        [MIN_SCALE]
        + [
            abs(a - b)
            for a, b in zip(union.after[1:], union.before[1:], strict=True)
            if a > 0 and b > 0
        ]
    )
    xs = [0.0] * len(union.frames)
    next_x: Dict[int, float] = {}
    parts: List[str] = []
    max_depth = 0
    depths = [0] * len(union.frames)
    for k, frame in enumerate(union.frames):
        parent = union.parents[k]
        if parent >= 0:
            depths[k] = depths[parent] + 1
            xs[k] = next_x.get(parent, xs[parent])
            next_x[parent] = xs[k] + union.after[k] * width
        w = union.after[k] * width
        if w < 0.3:
            continue
        max_depth = max(max_depth, depths[k])
        y = top_margin + depths[k] * row
        a, b = union.after[k], union.before[k]
        tip = (
            f"{frame.label()}\nbefore {100 * b:.2f}%, after {100 * a:.2f}% "
            f"({100 * (a - b):+.2f} pts)"
        )
        parts.append(
            f'<g class="{status(a, b)}"><title>{html.escape(tip)}</title>'
            f'<rect x="{xs[k]:.2f}" y="{y}" width="{max(w - 1, 0.3):.2f}" height="{row - 1}" '
            f'rx="2" fill="{_fill(a, b, scale)}"/>'
        )
        fits = int((w - 6) / char_px)
        if fits >= 3:
            text = frame.function
            if len(text) > fits:
                text = text[: fits - 1] + "…"
            parts.append(f'<text x="{xs[k] + 3:.2f}" y="{y + 13}">{html.escape(text)}</text>')
        parts.append("</g>")
    height = top_margin + (max_depth + 1) * row + 10
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="4" y="18" font-size="15" font-family="sans-serif">{html.escape(title)}</text>'
        f'<text x="4" y="36" fill="#666" font-family="sans-serif">{html.escape(subtitle)}</text>'
    )
    return head + "".join(parts) + "</svg>\n"
