"""speedscope's JSON file format, written from a call tree.

One ``sampled`` profile: one sample per node with a self value, weighted by
that value, so speedscope's "Left Heavy" and "Sandwich" views show exact self
and total values (its time order view shows each node's value in one block).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from otel_profiling.formats.calltree import CallNode, Frame

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
_UNITS = {"seconds": "seconds", "bytes": "bytes", "count": "none"}


def encode_speedscope(root: CallNode, unit: str = "seconds", name: str = "profile") -> bytes:
    """Encode ``root`` (values in ``seconds``, ``bytes`` or ``count``) as speedscope JSON."""
    if unit not in _UNITS:
        raise ValueError(f"Unknown unit {unit!r}: use seconds, bytes or count.")
    frame_index: Dict[Frame, int] = {}
    frames: List[Dict[str, Any]] = []
    samples: List[List[int]] = []
    weights: List[float] = []

    def index_of(frame: Frame) -> int:
        index = frame_index.get(frame)
        if index is None:
            index = frame_index[frame] = len(frames)
            entry: Dict[str, Any] = {"name": frame.function}
            if frame.filename:
                entry["file"] = frame.filename
            if frame.lineno:
                entry["line"] = frame.lineno
            frames.append(entry)
        return index

    for path, node in root.stacks():
        if node.self_value > 0:
            samples.append([index_of(frame) for frame in path])
            weights.append(node.self_value)
    total = sum(weights)
    doc = {
        "$schema": SCHEMA,
        "exporter": "otel-profiling",
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": _UNITS[unit],
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
