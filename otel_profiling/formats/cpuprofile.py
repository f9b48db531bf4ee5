"""Chrome DevTools ``.cpuprofile`` (CDP ``Profiler.Profile``).

Two sources:

* a sampling capture (``encode_cpuprofile_timeline``): real samples. A
  ``.cpuprofile`` has one timeline and no thread field, so the threads are
  laid end to end: each thread is a subtree ``name (thread ident)`` under the
  root and one segment of the timeline holding its own samples in the order
  they were taken, each lasting its weight. Per-thread totals are right, and
  each segment is that thread's real timeline in DevTools' and speedscope's
  time-ordered views. A suspended asyncio task's segment follows its
  thread's; under ``clock="cpu"`` the ``(idle)`` segment comes last;
* a call tree without a timeline (``encode_cpuprofile``, the yappi engine):
  one synthetic sample per node with self time, in depth-first order, whose
  duration is that self time. Viewers then compute exactly the tree's self
  and total times; the flame chart shows each node's time as one block.

Read back, each node's self time comes from ``samples``/``timeDeltas`` as
DevTools computes it. The clock (``wall`` or ``cpu``) is kept in a top-level
``otelProfiling`` object, which DevTools and speedscope ignore.
"""

from __future__ import annotations

from typing import Any, Dict, List

from otel_profiling.formats.calltree import CallNode, new_root
from otel_profiling.formats.format import (
    ProfileFormatError,
    ProfileTree,
    TreeFormat,
    json_document,
    json_object,
)
from otel_profiling.formats.samples import IDLE, SampleCapture, call_tree
from otel_profiling.formats.v8 import CallFrames, FrameReader
from otel_profiling.profile import ProfileKind


class _Nodes:
    """The ``nodes`` array: ids in pre-order, one ``callFrame`` JSON per distinct frame."""

    def __init__(self, root: CallNode) -> None:
        self.order = [node for node, _ in root.walk()]
        self.ids = {id(node): index for index, node in enumerate(self.order, start=1)}
        self.call_frame = CallFrames()

    def json(self, hits: Dict[int, int]) -> str:
        """The array, with each node's ``hitCount`` from ``hits`` (by node id)."""
        ids = self.ids
        parts = []
        for index, node in enumerate(self.order, start=1):
            children = ",".join([str(ids[id(child)]) for child in node.children.values()])
            parts.append(
                f'{{"id":{index},"callFrame":{self.call_frame(node.frame)},'
                f'"hitCount":{hits.get(index, 0)},"children":[{children}]}}'
            )
        return "[" + ",".join(parts) + "]"


CLOCK_KEY = "otelProfiling"
"""Top-level key naming the clock (``{"clock": "wall"}``): viewers ignore unknown keys."""


def _document(
    nodes: str, start_us: int, end_us: int, samples: List[int], deltas: List[int], clock: str
) -> bytes:
    extra = f',"{CLOCK_KEY}":{{"clock":"{clock}"}}' if clock in ("wall", "cpu") else ""
    text = (
        f'{{"nodes":{nodes},"startTime":{start_us},"endTime":{end_us},'
        f'"samples":[{",".join(map(str, samples))}],'
        f'"timeDeltas":[{",".join(map(str, deltas))}]{extra}}}'
    )
    return text.encode("utf-8")


def encode_cpuprofile_timeline(capture: SampleCapture, by_span: bool = False) -> bytes:
    """A sampling capture as ``.cpuprofile``: real samples, threads end to end.

    Each row (a run of identical samples) becomes its ``count`` samples
    sharing its time equally; ``hitCount`` is the number of samples.
    """
    root, leaves = call_tree(capture, by_span)
    nodes = _Nodes(root)
    ids = nodes.ids
    tracks = capture.tracks
    rows_of: List[List[int]] = [[] for _ in tracks]
    for row, track in enumerate(capture.sample_track):
        rows_of[track].append(row)
    # a thread's own segment, then its tasks' segments, in the order they were first seen
    order = sorted(range(len(tracks)), key=lambda t: (tracks[t].thread, tracks[t].task != "", t))
    runs = [
        (ids[id(leaves[row])], capture.sample_count[row], capture.sample_value[row])
        for track in order
        for row in rows_of[track]
    ]
    if capture.idle_ns > 0:
        runs.append((ids[id(root.children[IDLE])], max(capture.idle_count, 1), capture.idle_ns))
    samples: List[int] = []
    deltas: List[int] = []
    hits: Dict[int, int] = {}
    position = 0  # ns since startTime; rounded to µs per sample so rounding never drifts
    last_us = 0
    for node_id, count, value in runs:
        hits[node_id] = hits.get(node_id, 0) + count
        for k in range(count):
            stamp_us = (position + value * k // count + 500) // 1000
            samples.append(node_id)
            deltas.append(stamp_us - last_us)
            last_us = stamp_us
        position += value
    start_us = capture.start_ns // 1000
    end_us = start_us + max((position + 500) // 1000, last_us)
    return _document(nodes.json(hits), start_us, end_us, samples, deltas, capture.clock)


def encode_cpuprofile(
    root: CallNode, start_us: int, value_to_us: float = 1e6, clock: str = ""
) -> bytes:
    """Encode ``root`` (self values in seconds by default) as ``.cpuprofile`` JSON bytes."""
    nodes = _Nodes(root)
    samples: List[int] = []
    deltas: List[int] = []
    hits: Dict[int, int] = {}
    elapsed = 0.0  # µs since start, as a float, rounded per sample to avoid drift
    last_stamp = 0
    for index, node in enumerate(nodes.order, start=1):
        self_us = node.self_value * value_to_us
        if self_us >= 0.5:
            hits[index] = 1
            stamp = round(elapsed)
            samples.append(index)
            deltas.append(stamp - last_stamp)
            last_stamp = stamp
            elapsed += self_us
    start = int(start_us)
    end = start + max(round(elapsed), last_stamp)
    return _document(nodes.json(hits), start, end, samples, deltas, clock)


def decode_cpuprofile(doc: Dict[str, Any]) -> ProfileTree:
    """``.cpuprofile``: self time per node from ``samples``/``timeDeltas`` as DevTools does."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ProfileFormatError("a .cpuprofile needs a non-empty 'nodes' list")
    by_id = {node["id"]: node for node in nodes}
    children = {child for node in nodes for child in node.get("children", [])}
    first = next((node for node in nodes if node["id"] not in children), nodes[0])
    root = new_root()
    frame_of = FrameReader()
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
    extra = doc.get(CLOCK_KEY)
    clock = extra.get("clock", "") if isinstance(extra, dict) else ""
    return ProfileTree(
        root, "seconds", "cpuprofile", start * 1000, (end - start) * 1000, measure=str(clock)
    )


class CpuprofileFormat(TreeFormat):
    """Chrome DevTools' CPU profile: the default CPU format."""

    readable = True

    def __init__(self) -> None:
        super().__init__("cpuprofile", "cpuprofile", "application/json", [ProfileKind.CPU_PROFILE])

    def encode(self, capture: object) -> bytes:
        if isinstance(capture, SampleCapture):
            return encode_cpuprofile_timeline(capture, capture.by_span)
        return super().encode(capture)

    def encode_tree(self, tree: ProfileTree) -> bytes:
        if tree.unit != "seconds":
            raise ProfileFormatError(
                f"a .cpuprofile holds time, but this profile holds {tree.unit}: "
                "convert it to pprof, folded or speedscope instead"
            )
        return encode_cpuprofile(tree.root, start_us=tree.start_ns // 1000, clock=tree.measure)

    def decode(self, data: bytes) -> ProfileTree:
        return decode_cpuprofile(json_document(data))

    def sniff(self, data: bytes) -> bool:
        doc = json_object(data)
        return doc is not None and "nodes" in doc and ("samples" in doc or "timeDeltas" in doc)


FORMAT = CpuprofileFormat()
