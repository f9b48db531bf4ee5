"""Chrome DevTools ``.cpuprofile`` (CDP ``Profiler.Profile``) from a call tree.

The tree has no timeline, so samples are synthesised: one sample per node with
self time, in depth-first order, whose duration (the delta to the next sample)
is that self time. DevTools, speedscope and VS Code then compute exactly the
tree's self and total times; the flame chart shows each node's time in one
block rather than interleaved as it really happened.
"""

from __future__ import annotations

import json
from typing import Dict, List

from otel_profiling.formats.calltree import CallNode, Frame


def encode_cpuprofile(root: CallNode, start_us: int, value_to_us: float = 1e6) -> bytes:
    """Encode ``root`` (self values in seconds by default) as ``.cpuprofile`` JSON bytes."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    script_ids: Dict[str, str] = {}
    frames: Dict[Frame, str] = {}  # a frame's callFrame JSON, written once per frame
    parts: List[str] = []
    samples: List[int] = []
    deltas: List[int] = []
    elapsed = 0.0  # µs since start, as a float, rounded per sample to avoid drift
    last_stamp = 0

    order = [node for node, _ in root.walk()]
    ids = {id(node): index for index, node in enumerate(order, start=1)}
    for index, node in enumerate(order, start=1):
        frame = node.frame
        call_frame = frames.get(frame)
        if call_frame is None:
            script = (
                script_ids.setdefault(frame.filename, str(len(script_ids)))
                if frame.filename
                else "0"
            )
            line, column = (frame.lineno - 1, 0) if frame.lineno > 0 else (-1, -1)
            call_frame = frames[frame] = (
                f'{{"functionName":{dumps(frame.function)},"scriptId":"{script}",'
                f'"url":{dumps(frame.filename)},"lineNumber":{line},"columnNumber":{column}}}'
            )
        self_us = node.self_value * value_to_us
        sampled = self_us >= 0.5
        children = ",".join([str(ids[id(child)]) for child in node.children.values()])
        parts.append(
            f'{{"id":{index},"callFrame":{call_frame},"hitCount":{1 if sampled else 0},'
            f'"children":[{children}]}}'
        )
        if sampled:
            stamp = round(elapsed)
            samples.append(index)
            deltas.append(stamp - last_stamp)
            last_stamp = stamp
            elapsed += self_us
    start = int(start_us)
    end = start + max(round(elapsed), last_stamp)
    text = (
        f'{{"nodes":[{",".join(parts)}],"startTime":{start},"endTime":{end},'
        f'"samples":[{",".join(map(str, samples))}],'
        f'"timeDeltas":[{",".join(map(str, deltas))}]}}'
    )
    return text.encode("utf-8")
