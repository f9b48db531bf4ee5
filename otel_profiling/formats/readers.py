"""Readers: every profile format the project writes, parsed back into one ``CallNode`` tree.

The command line views, converts and merges profiles through this common
shape. Each reader returns a ``ProfileTree``: the tree plus the unit of its
self values (``seconds`` for CPU time, ``bytes`` for memory, ``count`` when
the format does not say) and the time the profile started, when known.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root
from otel_profiling.formats.protowire import fields, repeated_varints, signed64

UNITS = ("seconds", "bytes", "count")


class ProfileFormatError(ValueError):
    """The data is not a profile in a format the project reads."""


@dataclass
class ProfileTree:
    """A parsed profile: call tree, unit of its values, and when it was taken."""

    root: CallNode
    unit: str
    format: str
    start_ns: int = 0
    duration_ns: int = 0
    notes: Dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.root.total_value()


def _frame(name: str, url: str = "", line0: int = -1) -> Frame:
    """A frame from a 0-based line number (-1: unknown), as V8 formats store it."""
    return Frame(name or "(anonymous)", url or "", line0 + 1 if line0 >= 0 else 0)


class _Frames:
    """One ``Frame`` per distinct V8 call frame of an input, so big inputs share them."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[str, str, int], Frame] = {}

    def __call__(self, call_frame: Dict[str, Any]) -> Frame:
        key = (
            call_frame.get("functionName", ""),
            call_frame.get("url", ""),
            call_frame.get("lineNumber", -1),
        )
        frame = self._cache.get(key)
        if frame is None:
            frame = self._cache[key] = _frame(*key)
        return frame


# -- Chrome DevTools ------------------------------------------------------------------------


def read_cpuprofile(doc: Dict[str, Any]) -> ProfileTree:
    """``.cpuprofile``: self time per node from ``samples``/``timeDeltas`` as DevTools does."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ProfileFormatError("a .cpuprofile needs a non-empty 'nodes' list")
    by_id = {node["id"]: node for node in nodes}
    children = {child for node in nodes for child in node.get("children", [])}
    first = next((node for node in nodes if node["id"] not in children), nodes[0])
    root = new_root()
    frame_of = _Frames()
    tree_nodes: Dict[int, CallNode] = {first["id"]: root}
    pending = [first]
    while pending:
        node = pending.pop()
        parent = tree_nodes[node["id"]]
        for child_id in node.get("children", []):
            child = by_id[child_id]
            tree_nodes[child_id] = parent.child(frame_of(child["callFrame"]))
            pending.append(child)
    start = int(doc.get("startTime", 0))
    end = int(doc.get("endTime", start))
    samples: List[int] = doc.get("samples") or []
    deltas: List[int] = doc.get("timeDeltas") or []
    if samples and len(deltas) == len(samples):
        stamps = []
        now = start
        for delta in deltas:
            now += delta
            stamps.append(now)
        stamps.append(max(end, now))
        for index, sample in enumerate(samples):
            target = tree_nodes[sample]
            target.self_value += (stamps[index + 1] - stamps[index]) / 1e6
            target.self_count += 1
    else:  # hit counts only: spread the duration evenly over the hits
        hits = sum(node.get("hitCount", 0) for node in nodes)
        per_hit = (end - start) / 1e6 / hits if hits else 0.0
        for node in nodes:
            count = node.get("hitCount", 0)
            target = tree_nodes[node["id"]]
            target.self_count += count
            target.self_value += count * per_hit
    return ProfileTree(root, "seconds", "cpuprofile", start * 1000, (end - start) * 1000)


def read_heapprofile(doc: Dict[str, Any]) -> ProfileTree:
    """``.heapprofile`` (sampling heap profile): ``selfSize`` bytes per nested node."""
    head = doc.get("head")
    if not isinstance(head, dict):
        raise ProfileFormatError("a .heapprofile needs a 'head' node")
    counts: Dict[int, int] = {}
    for sample in doc.get("samples") or []:
        counts[sample["nodeId"]] = counts.get(sample["nodeId"], 0) + 1
    root = new_root()
    frame_of = _Frames()
    root.self_value += head.get("selfSize", 0)
    root.self_count += counts.get(head.get("id", -1), 0)
    pending: List[Tuple[Dict[str, Any], CallNode]] = [(head, root)]
    while pending:
        node, tree_node = pending.pop()
        for child in node.get("children", []):
            sub = tree_node.child(frame_of(child["callFrame"]))
            sub.self_value += child.get("selfSize", 0)
            sub.self_count += counts.get(child.get("id", -1), 0)
            pending.append((child, sub))
    return ProfileTree(root, "bytes", "heapprofile")


def read_heapsnapshot(doc: Dict[str, Any]) -> ProfileTree:
    """``.heapsnapshot`` summarised as DevTools' Summary view: bytes per type, then name."""
    try:
        meta = doc["snapshot"]["meta"]
        fields_ = meta["node_fields"]
        width = len(fields_)
        type_at, name_at, size_at = (
            fields_.index("type"),
            fields_.index("name"),
            fields_.index("self_size"),
        )
        type_names = meta["node_types"][0]
        nodes, strings = doc["nodes"], doc["strings"]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ProfileFormatError(f"not a .heapsnapshot ({exc!r} missing)") from None
    root = new_root()
    for offset in range(width, len(nodes), width):  # node 0 is the synthetic root
        kind = type_names[nodes[offset + type_at]]
        name = strings[nodes[offset + name_at]]
        if kind in ("object", "native", "closure"):
            label = name.split(" ", 1)[0] if kind == "object" else name
        else:
            label = f"({kind})"
        add_stack(
            root, [Frame(f"({kind})"), Frame(label or "(anonymous)")], nodes[offset + size_at]
        )
    return ProfileTree(root, "bytes", "heapsnapshot", notes={"summary": True})


# -- speedscope -------------------------------------------------------------------------------

_SPEEDSCOPE_UNITS = {
    "seconds": ("seconds", 1.0),
    "milliseconds": ("seconds", 1e-3),
    "microseconds": ("seconds", 1e-6),
    "nanoseconds": ("seconds", 1e-9),
    "bytes": ("bytes", 1.0),
    "none": ("count", 1.0),
}


def read_speedscope(doc: Dict[str, Any]) -> ProfileTree:
    """speedscope's file format: every profile (sampled or evented) added into one tree."""
    frames_doc = doc.get("shared", {}).get("frames", [])
    frames = [
        Frame(f.get("name", "?"), f.get("file", "") or "", int(f.get("line") or 0))
        for f in frames_doc
    ]
    root = new_root()
    unit = "count"
    for profile in doc.get("profiles", []):
        unit, scale = _SPEEDSCOPE_UNITS.get(profile.get("unit", "none"), ("count", 1.0))
        if profile.get("type") == "sampled":
            weights = profile.get("weights") or [1] * len(profile.get("samples", []))
            for stack, weight in zip(profile.get("samples", []), weights, strict=False):
                add_stack(root, [frames[i] for i in stack], weight * scale)
        elif profile.get("type") == "evented":
            opened: List[int] = []
            last = profile.get("startValue", 0)
            for event in profile.get("events", []):
                at = event["at"]
                if opened and at > last:
                    add_stack(root, [frames[i] for i in opened], (at - last) * scale, 0)
                last = at
                if event["type"] == "O":
                    opened.append(event["frame"])
                elif opened:
                    opened.pop()
        else:
            raise ProfileFormatError(f"unknown speedscope profile type {profile.get('type')!r}")
    return ProfileTree(root, unit, "speedscope")


# -- collapsed stacks ---------------------------------------------------------------------------

_LABEL = re.compile(r"^(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")


def _parse_label(text: str) -> Frame:
    match = _LABEL.match(text)
    if match:
        return Frame(match["function"], match["file"], int(match["line"]))
    return Frame(text)


def read_folded(data: bytes, unit: str = "count") -> ProfileTree:
    """Collapsed stacks (``a;b;c 42`` per line), as flamegraph.pl and speedscope read them."""
    root = new_root()
    cache: Dict[str, Frame] = {}
    for number, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        stack, _, value = line.rpartition(" ")
        try:
            amount = float(value)
        except ValueError:
            raise ProfileFormatError(
                f"line {number} of the folded stacks does not end with a number: {line[:80]!r}"
            ) from None
        frames = [cache.get(p) or cache.setdefault(p, _parse_label(p)) for p in stack.split(";")]
        add_stack(root, frames, amount)
    return ProfileTree(root, unit, "folded")


# -- pprof ------------------------------------------------------------------------------------


def read_pprof(data: bytes) -> ProfileTree:
    """pprof ``profile.proto`` (gzip or not): the default (last) sample type as value."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings: List[str] = []
    sample_types: List[Tuple[int, int]] = []
    samples: List[Tuple[List[int], List[int]]] = []
    locations: Dict[int, List[int]] = {}
    functions: Dict[int, Tuple[int, int, int]] = {}
    time_nanos = duration_nanos = 0
    default_type = 0
    try:
        for number, _wire, value in fields(data):
            if number == 6 and isinstance(value, bytes):
                strings.append(value.decode("utf-8", "replace"))
            elif number == 1 and isinstance(value, bytes):
                vt = {n: v for n, _, v in fields(value)}
                sample_types.append((int(vt.get(1, 0)), int(vt.get(2, 0))))
            elif number == 2 and isinstance(value, bytes):
                locs: List[int] = []
                values: List[int] = []
                for n, w, v in fields(value):
                    if n == 1:
                        locs.extend(repeated_varints(w, v))
                    elif n == 2:
                        values.extend(signed64(x) for x in repeated_varints(w, v))
                samples.append((locs, values))
            elif number == 4 and isinstance(value, bytes):
                loc_id = 0
                lines: List[int] = []
                for n, _, v in fields(value):
                    if n == 1:
                        loc_id = int(v)  # type: ignore[arg-type]
                    elif n == 4 and isinstance(v, bytes):
                        line = {ln: lv for ln, _, lv in fields(v)}
                        functions_line = (int(line.get(1, 0)), signed64(int(line.get(2, 0))))
                        lines.extend(functions_line)
                locations[loc_id] = lines
            elif number == 5 and isinstance(value, bytes):
                fn = {n: v for n, _, v in fields(value)}
                functions[int(fn.get(1, 0))] = (
                    int(fn.get(2, 0)),
                    int(fn.get(4, 0)),
                    int(fn.get(5, 0)),
                )
            elif number == 9:
                time_nanos = signed64(int(value))  # type: ignore[arg-type]
            elif number == 10:
                duration_nanos = signed64(int(value))  # type: ignore[arg-type]
            elif number == 14:
                default_type = int(value)  # type: ignore[arg-type]
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ProfileFormatError(f"not a pprof profile: {exc}") from None
    if not strings or strings[0] != "":
        raise ProfileFormatError("not a pprof profile: the string table must start with ''")

    def text(index: int) -> str:
        return strings[index] if 0 <= index < len(strings) else ""

    types = [(text(t), text(u)) for t, u in sample_types]
    value_at = len(types) - 1
    if default_type:
        for index, (name, _) in enumerate(types):
            if name == text(default_type):
                value_at = index
    count_at = next((i for i, (_, u) in enumerate(types) if u == "count" and i != value_at), -1)
    unit_name = types[value_at][1] if types else ""
    unit, scale = {
        "nanoseconds": ("seconds", 1e-9),
        "microseconds": ("seconds", 1e-6),
        "milliseconds": ("seconds", 1e-3),
        "seconds": ("seconds", 1.0),
        "bytes": ("bytes", 1.0),
    }.get(unit_name, ("count", 1.0))
    frame_cache: Dict[int, List[Frame]] = {}

    def location_frames(loc_id: int) -> List[Frame]:
        cached = frame_cache.get(loc_id)
        if cached is None:
            lines = locations.get(loc_id, [])
            cached = []
            for i in range(0, len(lines), 2):  # innermost (inlined) first
                name, filename, _ = functions.get(lines[i], (0, 0, 0))
                cached.append(
                    Frame(text(name) or "(unknown)", text(filename), max(lines[i + 1], 0))
                )
            frame_cache[loc_id] = cached
        return cached

    root = new_root()
    for locs, values in samples:
        stack: List[Frame] = []
        for loc_id in locs:  # leaf first
            stack.extend(location_frames(loc_id))
        stack.reverse()
        amount = values[value_at] * scale if value_at < len(values) else 0.0
        count = values[count_at] if 0 <= count_at < len(values) else 1
        add_stack(root, stack, amount, count)
    return ProfileTree(root, unit, "pprof", time_nanos, duration_nanos)


# -- detection -------------------------------------------------------------------------------

READERS: Dict[str, Callable[[bytes], ProfileTree]] = {}


def _json_reader(check: Callable[[Dict[str, Any]], ProfileTree]) -> Callable[[bytes], ProfileTree]:
    def read(data: bytes) -> ProfileTree:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ProfileFormatError(f"not JSON: {exc}") from None
        return check(doc)

    return read


READERS.update(
    cpuprofile=_json_reader(read_cpuprofile),
    heapprofile=_json_reader(read_heapprofile),
    heapsnapshot=_json_reader(read_heapsnapshot),
    speedscope=_json_reader(read_speedscope),
    folded=read_folded,
    pprof=read_pprof,
)

_EXTENSIONS = {
    "cpuprofile": "cpuprofile",
    "heapprofile": "heapprofile",
    "heaprofile": "heapprofile",
    "heapsnapshot": "heapsnapshot",
    "pprof": "pprof",
    "pb": "pprof",
    "folded": "folded",
    "collapsed": "folded",
    "speedscope": "speedscope",
}


def format_from_name(name: str) -> Optional[str]:
    """The format an object or file name's extension says (``x.speedscope.json`` too)."""
    base = name.rsplit("/", 1)[-1].lower()
    if base.endswith(".gz"):
        base = base[:-3]
    parts = base.split(".")
    for part in reversed(parts[1:]):
        if part in _EXTENSIONS:
            return _EXTENSIONS[part]
    return None


def sniff_format(data: bytes) -> str:
    """Recognise the format from the bytes, for files without a telling extension."""
    if data[:2] == b"\x1f\x8b":
        return "pprof"
    head = data.lstrip()[:1]
    if head == b"{":
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise ProfileFormatError(f"not JSON: {exc}") from None
        if "nodes" in doc and ("samples" in doc or "timeDeltas" in doc):
            return "cpuprofile"
        if "head" in doc:
            return "heapprofile"
        if "snapshot" in doc and "strings" in doc:
            return "heapsnapshot"
        if "profiles" in doc and "shared" in doc:
            return "speedscope"
        raise ProfileFormatError(
            "JSON, but not a cpuprofile, heapprofile, heapsnapshot or speedscope"
        )
    first_line = data.split(b"\n", 1)[0].strip()
    if re.match(rb"^\S.* [0-9.]+$", first_line):
        return "folded"
    try:
        read_pprof(data)
    except ProfileFormatError:
        pass
    else:
        return "pprof"
    raise ProfileFormatError(
        "unrecognised profile format: expected cpuprofile, heapprofile, heapsnapshot, "
        "pprof, folded or speedscope"
    )


def read_profile(data: bytes, name: str = "", fmt: Optional[str] = None) -> ProfileTree:
    """Parse ``data``; the format comes from ``fmt``, else ``name``'s extension, else the bytes."""
    chosen = fmt or format_from_name(name) or sniff_format(data)
    reader = READERS.get(chosen)
    if reader is None:
        raise ProfileFormatError(
            f"cannot read format {chosen!r}: choose one of {', '.join(READERS)}"
        )
    try:
        return reader(data)
    except ProfileFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ProfileFormatError(
            f"malformed {chosen} profile ({type(exc).__name__}: {exc})"
        ) from None
