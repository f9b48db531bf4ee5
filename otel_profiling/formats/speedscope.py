"""speedscope's JSON file format, written from a call tree.

One ``sampled`` profile: one sample per node with a self value, weighted by
that value, so speedscope's "Left Heavy" and "Sandwich" views show exact self
and total values (its time order view shows each node's value in one block).
The profile's name says what it measures (``wall time``, ``CPU time``...),
which is how the measure comes back when the file is read.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root
from otel_profiling.formats.format import (
    MEASURE_LABELS,
    ProfileFormatError,
    ProfileTree,
    TreeFormat,
    json_document,
    json_object,
)
from otel_profiling.profile import ProfileKind

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


_READ_UNITS = {
    "seconds": ("seconds", 1.0),
    "milliseconds": ("seconds", 1e-3),
    "microseconds": ("seconds", 1e-6),
    "nanoseconds": ("seconds", 1e-9),
    "bytes": ("bytes", 1.0),
    "none": ("count", 1.0),
}
_MEASURES: Dict[str, str] = {}
for _measure, _label in MEASURE_LABELS.items():
    _MEASURES.setdefault(_label, _measure)  # "memory (bytes)" is inuse_space, as profilers write


def decode_speedscope(doc: Dict[str, Any]) -> ProfileTree:
    """speedscope's file format: every profile (sampled or evented) added into one tree."""
    frames_doc = doc.get("shared", {}).get("frames", [])
    frames = [
        Frame(f.get("name", "?"), f.get("file", "") or "", int(f.get("line") or 0))
        for f in frames_doc
    ]
    root = new_root()
    unit = "count"
    measures = set()
    for profile in doc.get("profiles", []):
        unit, scale = _READ_UNITS.get(profile.get("unit", "none"), ("count", 1.0))
        measures.add(_MEASURES.get(profile.get("name", ""), ""))
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
    measure = measures.pop() if len(measures) == 1 else ""
    return ProfileTree(root, unit, "speedscope", measure=measure, has_counts=False)


class SpeedscopeFormat(TreeFormat):
    """speedscope's own JSON file format."""

    readable = True
    aliases = ("speedscope.json",)

    def __init__(self) -> None:
        super().__init__(
            "speedscope",
            "speedscope.json",
            "application/json",
            [ProfileKind.CPU_PROFILE, ProfileKind.HEAP_PROFILE],
        )

    def encode_tree(self, tree: ProfileTree) -> bytes:
        return encode_speedscope(
            tree.root, unit=tree.unit, name=MEASURE_LABELS.get(tree.measure, "profile")
        )

    def decode(self, data: bytes) -> ProfileTree:
        return decode_speedscope(json_document(data))

    def sniff(self, data: bytes) -> bool:
        doc = json_object(data)
        return doc is not None and "profiles" in doc and "shared" in doc


FORMAT = SpeedscopeFormat()
