"""Independent readers for the profile formats, checking what the viewers check.

These do not import the encoders: they parse the bytes as Chrome DevTools and
speedscope would, and fail on what would make those viewers reject the file.
"""

from __future__ import annotations

import functools
import io
import json
import re
from typing import Any, Dict, List, Tuple


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


def cpuprofile_total_times(profile: Dict[str, Any]) -> Dict[str, float]:
    """Largest total time (µs, self plus descendants) of any node per function name."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    self_us: Dict[int, float] = {}
    stamps = []
    now = profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    for index, sample in enumerate(profile["samples"]):
        self_us[sample] = self_us.get(sample, 0.0) + (stamps[index + 1] - stamps[index])
    totals: Dict[int, float] = {}
    for node in reversed(profile["nodes"]):  # children follow their parent in our files
        totals[node["id"]] = self_us.get(node["id"], 0.0) + sum(
            totals.get(child, 0.0) for child in node.get("children", [])
        )
    best: Dict[str, float] = {}
    for node_id, total in totals.items():
        name = by_id[node_id]["callFrame"]["functionName"]
        best[name] = max(best.get(name, 0.0), total)
    return best


def cpuprofile_inclusive_times(profile: Dict[str, Any]) -> Dict[str, float]:
    """Inclusive time (µs) per function name, summed over every path that reaches it.

    A node inside another node of the same name (recursion) is counted once,
    through the outer one, as DevTools' bottom-up view does.
    """
    by_id = {node["id"]: node for node in profile["nodes"]}
    self_us: Dict[int, float] = {}
    stamps = []
    now = profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    for index, sample in enumerate(profile["samples"]):
        self_us[sample] = self_us.get(sample, 0.0) + (stamps[index + 1] - stamps[index])
    times: Dict[str, float] = {}
    stack: List[Tuple[int, frozenset]] = [(profile["nodes"][0]["id"], frozenset())]
    while stack:
        node_id, above = stack.pop()
        names = above | {by_id[node_id]["callFrame"]["functionName"]}
        own = self_us.get(node_id, 0.0)
        for name in names:  # each name on the path once, however often it recurs
            times[name] = times.get(name, 0.0) + own
        stack.extend((child, names) for child in by_id[node_id].get("children", []))
    return times


def cpuprofile_timeline(profile: Dict[str, Any]) -> List[Tuple[int, float, float]]:
    """``(node id, start µs, duration µs)`` of each sample, as DevTools lays them out."""
    stamps = []
    now = profile["startTime"]
    for delta in profile["timeDeltas"]:
        now += delta
        stamps.append(now)
    stamps.append(profile["endTime"])
    return [
        (sample, stamps[index], stamps[index + 1] - stamps[index])
        for index, sample in enumerate(profile["samples"])
    ]


def cpuprofile_paths(profile: Dict[str, Any]) -> Dict[Tuple[str, ...], float]:
    """Inclusive time (µs) of each node, keyed by its path of names from the root (excluded)."""
    by_id = {node["id"]: node for node in profile["nodes"]}
    self_us: Dict[int, float] = {}
    for sample, _, duration in cpuprofile_timeline(profile):
        self_us[sample] = self_us.get(sample, 0.0) + duration
    paths: Dict[Tuple[str, ...], float] = {}
    order: List[Tuple[int, Tuple[str, ...]]] = []
    stack: List[Tuple[int, Tuple[str, ...]]] = [(profile["nodes"][0]["id"], ())]
    while stack:
        node_id, path = stack.pop()
        order.append((node_id, path))
        for child in by_id[node_id].get("children", []):
            stack.append((child, path + (by_id[child]["callFrame"]["functionName"],)))
    totals: Dict[int, float] = {}
    for node_id, path in reversed(order):
        totals[node_id] = self_us.get(node_id, 0.0) + sum(
            totals[child] for child in by_id[node_id].get("children", [])
        )
        if path:
            paths[path] = paths.get(path, 0.0) + totals[node_id]
    return paths


# -- .heapprofile ----------------------------------------------------------------------


def load_heapprofile(data: bytes) -> Dict[str, Any]:
    """Parse and validate a ``.heapprofile`` (CDP ``SamplingHeapProfile``)."""
    profile = json.loads(data)
    assert "head" in profile and "samples" in profile, "needs head and samples"
    ids = set()
    stack = [profile["head"]]
    assert profile["head"]["callFrame"]["functionName"] == "(root)"
    while stack:
        node = stack.pop()
        for key in ("callFrame", "selfSize", "id", "children"):
            assert key in node, f"node lacks {key}"
        frame = node["callFrame"]
        for key in ("functionName", "scriptId", "url", "lineNumber", "columnNumber"):
            assert key in frame, f"callFrame lacks {key}"
        assert isinstance(frame["scriptId"], str)
        assert isinstance(node["selfSize"], int) and node["selfSize"] >= 0
        assert isinstance(node["id"], int) and node["id"] not in ids, "node ids must be unique"
        ids.add(node["id"])
        stack.extend(node["children"])
    ordinals = set()
    for sample in profile["samples"]:
        assert set(sample) >= {"size", "nodeId", "ordinal"}
        assert sample["nodeId"] in ids, "sample names an unknown node"
        assert sample["size"] > 0
        assert sample["ordinal"] not in ordinals
        ordinals.add(sample["ordinal"])
    return profile


def heapprofile_totals(profile: Dict[str, Any]) -> Dict[str, int]:
    """Largest subtree size (bytes) of any node per function name."""
    best: Dict[str, int] = {}

    order: List[Dict[str, Any]] = []
    stack = [profile["head"]]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node["children"])
    totals: Dict[int, int] = {}
    for node in reversed(order):
        total = node["selfSize"] + sum(totals[c["id"]] for c in node["children"])
        totals[node["id"]] = total
        name = node["callFrame"]["functionName"]
        best[name] = max(best.get(name, 0), total)
    return best


# -- .heapsnapshot ------------------------------------------------------------------------


class HeapSnapshot:
    """A parsed ``.heapsnapshot`` checked the way DevTools' loader checks it."""

    def __init__(self, data: bytes) -> None:
        doc = json.loads(data)
        meta = doc["snapshot"]["meta"]
        self.node_fields: List[str] = meta["node_fields"]
        self.edge_fields: List[str] = meta["edge_fields"]
        assert self.node_fields[:5] == ["type", "name", "id", "self_size", "edge_count"]
        assert self.edge_fields == ["type", "name_or_index", "to_node"]
        self.node_types: List[str] = meta["node_types"][0]
        self.edge_types: List[str] = meta["edge_types"][0]
        self.nodes: List[int] = doc["nodes"]
        self.edges: List[int] = doc["edges"]
        self.strings: List[str] = doc["strings"]
        nf, ef = len(self.node_fields), len(self.edge_fields)
        assert len(self.nodes) % nf == 0, "nodes length is not a multiple of the field count"
        assert len(self.edges) % ef == 0, "edges length is not a multiple of the field count"
        self.count = len(self.nodes) // nf
        assert doc["snapshot"]["node_count"] == self.count
        assert doc["snapshot"]["edge_count"] == len(self.edges) // ef
        edge_total = sum(self.nodes[i * nf + 4] for i in range(self.count))
        assert edge_total * ef == len(self.edges), "edge counts do not sum to the edge array"
        ids = [self.nodes[i * nf + 2] for i in range(self.count)]
        assert len(set(ids)) == len(ids), "node ids are not unique"
        assert self.node_types[self.nodes[0]] == "synthetic", "node 0 must be the synthetic root"
        self.first_edge: List[int] = []
        position = 0
        for i in range(self.count):
            self.first_edge.append(position)
            assert 0 <= self.nodes[i * nf] < len(self.node_types)
            assert 0 <= self.nodes[i * nf + 1] < len(self.strings)
            position += self.nodes[i * nf + 4] * ef
        for j in range(0, len(self.edges), ef):
            etype, name, to = self.edges[j : j + 3]
            assert 0 <= etype < len(self.edge_types)
            assert to % nf == 0, "to_node is not a multiple of the node field count"
            assert 0 <= to < len(self.nodes), "to_node points outside the nodes"
            if self.edge_types[etype] not in ("element", "hidden"):
                assert 0 <= name < len(self.strings), "edge name is not a string index"
        self._retainers: Dict[int, List[Any]] | None = None

    def node(self, index: int) -> Dict[str, Any]:
        nf = len(self.node_fields)
        row = self.nodes[index * nf : index * nf + nf]
        return {
            "index": index,
            "type": self.node_types[row[0]],
            "name": self.strings[row[1]],
            "id": row[2],
            "self_size": row[3],
        }

    def find(self, name: str) -> List[int]:
        nf = len(self.node_fields)
        wanted = self.strings.index(name) if name in self.strings else -1
        return [i for i in range(self.count) if self.nodes[i * nf + 1] == wanted]

    def edges_of(self, index: int) -> List[Tuple[str, Any, int]]:
        nf, ef = len(self.node_fields), len(self.edge_fields)
        out = []
        start = self.first_edge[index]
        for k in range(self.nodes[index * nf + 4]):
            etype, name, to = self.edges[start + k * ef : start + k * ef + 3]
            kind = self.edge_types[etype]
            label = name if kind in ("element", "hidden") else self.strings[name]
            out.append((kind, label, to // nf))
        return out

    def retainers(self, index: int) -> List[Tuple[str, Any, int]]:
        """``(edge type, edge name, retaining node index)`` for each edge into ``index``."""
        if self._retainers is None:
            self._retainers = {}
            for source in range(self.count):
                for kind, label, to in self.edges_of(source):
                    self._retainers.setdefault(to, []).append((kind, label, source))
        return self._retainers.get(index, [])


# -- pprof ----------------------------------------------------------------------------------

_PROTO_SCALARS = {"int64": 3, "uint64": 4, "string": 9, "bool": 8}


@functools.lru_cache(maxsize=1)
def pprof_message_class() -> Any:
    """The tests' one pprof schema: ``tests/profile.proto`` compiled at run time.

    Built with protobuf's descriptor pool from the tests' own copy of the
    schema, so profiles are checked independently of the package's decoder.
    """
    import re
    from pathlib import Path

    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    text = (Path(__file__).parent / "profile.proto").read_text()
    text = re.sub(r"//[^\n]*", "", text)
    package = re.search(r"package\s+([\w.]+)\s*;", text).group(1)  # type: ignore[union-attr]
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="profile.proto", package=package, syntax="proto3"
    )
    for name, body in re.findall(r"message\s+(\w+)\s*\{([^}]*)\}", text):
        message = file_proto.message_type.add(name=name)
        for repeated, ftype, fname, number in re.findall(
            r"(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)\s*;", body
        ):
            field = message.field.add(name=fname, number=int(number))
            field.label = 3 if repeated else 1
            if ftype in _PROTO_SCALARS:
                field.type = _PROTO_SCALARS[ftype]
            else:
                field.type = 11
                field.type_name = f".{package}.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Profile"))


def load_pprof(data: bytes) -> Any:
    """Gunzip and decode a pprof profile against ``profile.proto``; check its invariants."""
    import gzip

    assert data[:2] == b"\x1f\x8b", "pprof files are gzip-compressed"
    profile = pprof_message_class()()
    profile.ParseFromString(gzip.decompress(data))
    assert profile.string_table and profile.string_table[0] == "", "string 0 must be empty"
    n_strings = len(profile.string_table)
    functions = {f.id for f in profile.function}
    assert 0 not in functions and len(functions) == len(profile.function)
    locations = {loc.id for loc in profile.location}
    assert 0 not in locations and len(locations) == len(profile.location)
    for func in profile.function:
        assert 0 <= func.name < n_strings and 0 <= func.filename < n_strings
    for loc in profile.location:
        assert loc.line and all(line.function_id in functions for line in loc.line)
    for sample in profile.sample:
        assert len(sample.value) == len(profile.sample_type)
        assert all(loc in locations for loc in sample.location_id)
    return profile


def pprof_stacks(profile: Any) -> List[Tuple[List[str], List[int]]]:
    """Each sample as (function names root first, values)."""
    names = {f.id: profile.string_table[f.name] for f in profile.function}
    loc_func = {loc.id: names[loc.line[0].function_id] for loc in profile.location}
    return [
        ([loc_func[i] for i in reversed(sample.location_id)], list(sample.value))
        for sample in profile.sample
    ]


def pprof_labels(profile: Any, sample: Any) -> Dict[str, Any]:
    """A sample's labels: ``{key: str value, or num value}``."""
    strings = profile.string_table
    return {
        strings[label.key]: strings[label.str] if label.str else label.num for label in sample.label
    }


# -- folded -------------------------------------------------------------------------------


def load_folded(data: bytes) -> List[Tuple[List[str], int]]:
    """Collapsed stacks as flamegraph.pl reads them: the count after the last space."""
    out = []
    for line in data.decode("utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        assert stack and count.isdigit(), f"bad folded line {line!r}"
        out.append((stack.split(";"), int(count)))
    return out


def load_callgrind(data: bytes) -> Dict[str, Any]:
    """Parse callgrind data with gprof2dot's parser (what turns it into a call graph).

    Returns ``{function name: (calls, self cost, {callee name: (calls, cost)})}``
    with the name cut before its `` file:line`` suffix; fails on a reference
    to a file or function number that was never named.
    """
    import gprof2dot

    text = data.decode("utf-8")
    named = set()
    for match in re.finditer(r"^(c?f[ln])=\((\d+)\)( .+)?$", text, re.M):
        kind, number, name = match.group(1).lstrip("c"), match.group(2), match.group(3)
        if name:
            assert (kind, number) not in named, f"{kind}=({number}) named twice"
            named.add((kind, number))
        else:
            assert (kind, number) in named, f"{kind}=({number}) used before it was named"
    profile = gprof2dot.CallgrindParser(io.StringIO(text)).parse()
    functions = profile.functions
    result: Dict[str, Any] = {}
    for function in functions.values():
        calls = {
            functions[call.callee_id].name.split(" ")[0]: (
                call.events.get(gprof2dot.CALLS, 0),
                call.events.get(gprof2dot.SAMPLES2, 0),
            )
            for call in function.calls.values()
        }
        result[function.name.split(" ")[0]] = (
            function.called or 0,
            function.events.get(gprof2dot.SAMPLES, 0),
            calls,
        )
    return result
