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
"""

from __future__ import annotations

import json
from typing import Dict, List

from otel_profiling.formats.calltree import CallNode, Frame
from otel_profiling.formats.samples import IDLE, SampleCapture, call_tree


class _Nodes:
    """The ``nodes`` array: ids in pre-order, one ``callFrame`` JSON per distinct frame."""

    def __init__(self, root: CallNode) -> None:
        self.order = [node for node, _ in root.walk()]
        self.ids = {id(node): index for index, node in enumerate(self.order, start=1)}
        self._dumps = json.JSONEncoder(ensure_ascii=False).encode
        self._scripts: Dict[str, str] = {}
        self._frames: Dict[Frame, str] = {}

    def call_frame(self, frame: Frame) -> str:
        found = self._frames.get(frame)
        if found is None:
            script = (
                self._scripts.setdefault(frame.filename, str(len(self._scripts)))
                if frame.filename
                else "0"
            )
            line, column = (frame.lineno - 1, 0) if frame.lineno > 0 else (-1, -1)
            found = self._frames[frame] = (
                f'{{"functionName":{self._dumps(frame.function)},"scriptId":"{script}",'
                f'"url":{self._dumps(frame.filename)},"lineNumber":{line},"columnNumber":{column}}}'
            )
        return found

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


def _document(
    nodes: str, start_us: int, end_us: int, samples: List[int], deltas: List[int]
) -> bytes:
    text = (
        f'{{"nodes":{nodes},"startTime":{start_us},"endTime":{end_us},'
        f'"samples":[{",".join(map(str, samples))}],'
        f'"timeDeltas":[{",".join(map(str, deltas))}]}}'
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
    return _document(nodes.json(hits), start_us, end_us, samples, deltas)


def encode_cpuprofile(root: CallNode, start_us: int, value_to_us: float = 1e6) -> bytes:
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
    return _document(nodes.json(hits), start, end, samples, deltas)
