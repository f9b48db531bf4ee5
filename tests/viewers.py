"""Independent readers for the profile formats, checking what the viewers check.

These do not import the encoders: they parse the bytes as Chrome DevTools and
speedscope would, and fail on what would make those viewers reject the file.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List


def load_cpuprofile(data: bytes) -> Dict[str, Any]:
    """Parse and validate a ``.cpuprofile`` (CDP ``Profiler.Profile``)."""
    profile = json.loads(data)
    for field in ("nodes", "startTime", "endTime", "samples", "timeDeltas"):
        assert field in profile, f"missing {field}"  # speedscope needs nodes/samples/timeDeltas
    nodes: List[Dict[str, Any]] = profile["nodes"]
    assert nodes, "no nodes"
    ids = [node["id"] for node in nodes]
    assert len(ids) == len(set(ids)), "node ids are not unique"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    by_id = {node["id"]: node for node in nodes}
    root = nodes[0]
    assert root["callFrame"]["functionName"] == "(root)"
    parents: Dict[int, int] = {}
    for node in nodes:
        frame = node["callFrame"]
        for key in ("functionName", "scriptId", "url", "lineNumber", "columnNumber"):
            assert key in frame, f"callFrame lacks {key}"
        assert isinstance(frame["lineNumber"], int) and frame["lineNumber"] >= -1
        for child in node.get("children", []):
            assert child in by_id, f"child {child} of {node['id']} does not exist"
            assert child not in parents, f"node {child} has two parents"
            parents[child] = node["id"]
    assert root["id"] not in parents, "root has a parent"
    assert set(parents) == set(ids) - {root["id"]}, "some nodes are unreachable from the root"
    samples, deltas = profile["samples"], profile["timeDeltas"]
    assert len(samples) == len(deltas), "samples and timeDeltas differ in length"
    assert all(s in by_id for s in samples), "a sample names an unknown node"
    assert all(isinstance(d, int) and d >= 0 for d in deltas)
    counts: Dict[int, int] = {}
    for sample in samples:
        counts[sample] = counts.get(sample, 0) + 1
    for node in nodes:
        assert node.get("hitCount", 0) == counts.get(node["id"], 0), "hitCount disagrees"
    assert profile["startTime"] + sum(deltas) <= profile["endTime"]
    return profile


def cpuprofile_self_times(profile: Dict[str, Any]) -> Dict[str, float]:
    """Self time per function name in µs, computed the way DevTools does from samples."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    stamps = []
    now = profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    times: Dict[str, float] = {}
    for index, sample in enumerate(profile["samples"]):
        name = by_id[sample]["callFrame"]["functionName"]
        times[name] = times.get(name, 0.0) + (stamps[index + 1] - stamps[index])
    return times


def cpuprofile_function_names(profile: Dict[str, Any]) -> set:
    return {node["callFrame"]["functionName"] for node in profile["nodes"]}
