"""Flame graphs of a ``ProfileTree``: a self-contained HTML page and a static SVG.

The page carries its data, script and style inline and a Content-Security-Policy
that forbids every other source, so it opens offline and makes no request.
Frames are laid out "left heavy" (children sorted by total, widest first) with
the root on top; CPU profiles are measured in time, heap profiles in bytes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from otel_profiling.formats import ProfileTree
from otel_profiling.formats.calltree import CallNode, Frame

ASSETS = Path(__file__).resolve().parent / "assets"
MAX_NODES = 60_000
TOP_FUNCTIONS = 200


@dataclass
class FlatTree:
    """The tree in pre-order, children widest first: parent index, total and self per node."""

    nodes: List[CallNode]
    parents: List[int]
    totals: List[float]
    depths: List[int]


def totals_of(root: CallNode) -> Dict[int, float]:
    """Total value (self + descendants) per node, keyed by ``id(node)``."""
    order = [node for node, _ in root.walk()]
    totals = {id(node): node.self_value for node in order}
    for node in reversed(order):
        for child in node.children.values():
            totals[id(node)] += totals[id(child)]
    return totals


def flatten(root: CallNode, max_nodes: int = MAX_NODES) -> FlatTree:
    """Pre-order layout; beyond ``max_nodes`` the thinnest frames are left out (gaps)."""
    totals = totals_of(root)
    threshold = 0.0
    if len(totals) > max_nodes:
        ranked = sorted(totals.values(), reverse=True)
        threshold = ranked[max_nodes - 1]
    flat = FlatTree([], [], [], [])
    stack: List[Tuple[CallNode, int, int]] = [(root, -1, 0)]
    while stack:
        node, parent, depth = stack.pop()
        index = len(flat.nodes)
        flat.nodes.append(node)
        flat.parents.append(parent)
        flat.totals.append(totals[id(node)])
        flat.depths.append(depth)
        kids = sorted(node.children.values(), key=lambda c: totals[id(c)], reverse=True)
        for child in reversed(kids):
            if totals[id(child)] > threshold or (threshold == 0 and totals[id(child)] >= 0):
                stack.append((child, index, depth + 1))
    return flat


def top_functions(root: CallNode, limit: int = TOP_FUNCTIONS) -> List[Tuple[Frame, float, float]]:
    """``(frame, self, total)`` per function; recursion counts once toward total."""
    totals = totals_of(root)
    self_by: Dict[Frame, float] = {}
    total_by: Dict[Frame, float] = {}
    on_path: Dict[Frame, int] = {}
    stack: List[Tuple[CallNode, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        frame = node.frame
        if node is root:
            if not leaving:
                stack.append((node, True))
                stack.extend((child, False) for child in node.children.values())
            continue
        if leaving:
            on_path[frame] -= 1
            continue
        self_by[frame] = self_by.get(frame, 0.0) + node.self_value
        if not on_path.get(frame):
            total_by[frame] = total_by.get(frame, 0.0) + totals[id(node)]
        on_path[frame] = on_path.get(frame, 0) + 1
        stack.append((node, True))
        stack.extend((child, False) for child in node.children.values())
    rows = [(frame, self_by[frame], total_by.get(frame, 0.0)) for frame in self_by]
    rows.sort(key=lambda row: (row[1], row[2]), reverse=True)
    return rows[:limit]


def location(frame: Frame) -> str:
    """``file:line`` of a frame, as the pages show it ('' when unknown)."""
    if not frame.filename:
        return ""
    return f"{frame.filename}:{frame.lineno}" if frame.lineno else frame.filename


def format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        amount, names = float(value), ["B", "KiB", "MiB", "GiB", "TiB"]
        k = 0
        while abs(amount) >= 1024 and k < len(names) - 1:
            amount /= 1024
            k += 1
        return f"{amount:.1f} {names[k]}" if k else f"{round(amount)} B"
    if unit == "seconds":
        if value >= 1:
            return f"{value:.2f} s"
        if value >= 1e-3:
            return f"{value * 1e3:.1f} ms"
        return f"{value * 1e6:.0f} µs"
    return f"{round(value)} samples"


def describe(tree: ProfileTree) -> str:
    measure = tree.measure_label
    extra = " — summary by type and constructor" if tree.notes.get("summary") else ""
    return f"{tree.format} profile, {measure}: total {format_value(tree.total, tree.unit)}{extra}"


def _csp_hash(text: str) -> str:
    return (
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"
    )


def inline_page(
    template: str, title: str, subtitle: str, data: object, scripts: List[str], styles: List[str]
) -> str:
    """An asset page with its data, scripts and styles inline, under a CSP that allows only them."""
    script = "\n".join((ASSETS / name).read_text("utf-8") for name in scripts)
    style = "\n".join((ASSETS / name).read_text("utf-8") for name in styles)
    csp = (
        f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}; "
        "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (ASSETS / template).read_text("utf-8")
    for key, value in (
        ("{{CSP}}", html.escape(csp, quote=False)),
        ("{{TITLE}}", html.escape(title)),
        ("{{SUBTITLE}}", html.escape(subtitle)),
        ("{{STYLE}}", style),
        ("{{DATA}}", payload),
        ("{{SCRIPT}}", script),
    ):
        page = page.replace(key, value)
    return page


def render_html(tree: ProfileTree, title: str) -> str:
    """A self-contained page: flame graph with search and zoom, and a top-functions table."""
    flat = flatten(tree.root)
    names: Dict[str, int] = {}
    locs: Dict[str, int] = {"": 0}
    n: List[int] = []
    loc: List[int] = []
    for node in flat.nodes:
        n.append(names.setdefault(node.frame.function, len(names)))
        loc.append(locs.setdefault(location(node.frame), len(locs)))
    top = [
        [frame.function, location(frame), round(self_v, 9), round(total, 9)]
        for frame, self_v, total in top_functions(tree.root)
    ]
    data = {
        "unit": tree.unit,
        "names": list(names),
        "locs": list(locs),
        "n": n,
        "l": loc,
        "p": flat.parents,
        "v": [round(t, 9) for t in flat.totals],
        "s": [round(node.self_value, 9) for node in flat.nodes],
        "top": top,
    }
    return inline_page(
        "flamegraph.html",
        title,
        describe(tree),
        data,
        ["graph.js", "flamegraph.js"],
        ["flamegraph.css"],
    )


def _svg_color(name: str, unit: str) -> str:
    h = 0
    for char in name:
        h = (h * 31 + ord(char)) & 0xFFFFFFFF
    if unit == "bytes":
        return f"hsl({190 + h % 50},60%,{62 + h % 15}%)"
    return f"hsl({h % 55},{75 + h % 20}%,{55 + h % 12}%)"


def render_svg(tree: ProfileTree, title: str, width: int = 1200) -> str:
    """A static flame graph (root on top); each frame's tooltip gives its values."""
    row, top_margin, char_px = 18, 46, 7.0
    flat = flatten(tree.root)
    total = flat.totals[0] or 1.0
    scale = width / total
    xs = [0.0] * len(flat.nodes)
    next_x: Dict[int, float] = {}
    parts: List[str] = []
    max_depth = 0
    for index, node in enumerate(flat.nodes):
        parent = flat.parents[index]
        if parent >= 0:
            xs[index] = next_x.get(parent, xs[parent])
            next_x[parent] = xs[index] + flat.totals[index] * scale
        w = flat.totals[index] * scale
        if w < 0.3:
            continue
        depth = flat.depths[index]
        max_depth = max(max_depth, depth)
        y = top_margin + depth * row
        label = node.frame.label()
        tip = (
            f"{label}\n{format_value(flat.totals[index], tree.unit)} "
            f"({100 * flat.totals[index] / total:.2f}%), self "
            f"{format_value(node.self_value, tree.unit)}"
        )
        parts.append(
            f'<g><title>{html.escape(tip)}</title><rect x="{xs[index]:.2f}" y="{y}" '
            f'width="{max(w - 1, 0.3):.2f}" height="{row - 1}" rx="2" '
            f'fill="{_svg_color(node.frame.function, tree.unit)}"/>'
        )
        fits = int((w - 6) / char_px)
        if fits >= 3:
            text = node.frame.function
            if len(text) > fits:
                text = text[: fits - 1] + "…"
            parts.append(f'<text x="{xs[index] + 3:.2f}" y="{y + 13}">{html.escape(text)}</text>')
        parts.append("</g>")
    height = top_margin + (max_depth + 1) * row + 10
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="4" y="18" font-size="15" font-family="sans-serif">{html.escape(title)}</text>'
        f'<text x="4" y="36" fill="#666" font-family="sans-serif">'
        f"{html.escape(describe(tree))}</text>"
    )
    return head + "".join(parts) + "</svg>\n"
