"""V8 ``.heapsnapshot`` (what Chrome DevTools' Memory tab loads), held in compact arrays.

A snapshot is a graph: nodes ``[type, name, id, self_size, edge_count,
trace_node_id, detachedness]`` and edges ``[type, name_or_index, to_node]``,
flattened into integer arrays, plus a string table. Each node's edges are
contiguous, in node order; ``to_node`` is the target's index times the node
field count; node 0 is the synthetic root.

``HeapGraph`` keeps each field in its own ``array`` (a few bytes per node and
per edge, no Python object per entry), and ``write_heapsnapshot`` streams the
JSON in chunks, so memory grows with the object count in compact arrays and
never holds the graph as Python dicts or the document as one string.
"""

from __future__ import annotations

import json
from array import array
from itertools import compress, repeat
from operator import is_
from typing import BinaryIO, Dict, List, Sequence

NODE_FIELDS = ["type", "name", "id", "self_size", "edge_count", "trace_node_id", "detachedness"]
NODE_TYPES = [
    "hidden", "array", "string", "object", "code", "closure", "regexp", "number",
    "native", "synthetic", "concatenated string", "sliced string", "symbol", "bigint",
    "object shape",
]  # fmt: skip
EDGE_FIELDS = ["type", "name_or_index", "to_node"]
EDGE_TYPES = ["context", "element", "property", "internal", "hidden", "shortcut", "weak"]

HIDDEN, ARRAY, STRING, OBJECT, CODE, CLOSURE = 0, 1, 2, 3, 4, 5
NUMBER, NATIVE, SYNTHETIC = 7, 8, 9
ELEMENT, PROPERTY, INTERNAL, SHORTCUT = 1, 2, 3, 5

NODE_FIELD_COUNT = len(NODE_FIELDS)
_CHUNK = 16384


class StringTable:
    """Strings by first use; ``add`` returns the index (a dict lookup when known)."""

    def __init__(self) -> None:
        self.index: Dict[str, int] = {"": 0}
        self.strings: List[str] = [""]

    def add(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.strings)
            self.strings.append(text)
        return found

    def add_many(self, texts: List[str]) -> array:
        """Indexes of ``texts`` (exact ``str``) as an ``i`` array; new ones added in order."""
        get = self.index.get
        found = list(map(get, texts))
        try:
            return array("i", found)
        except TypeError:  # None: some are new
            pass
        new = dict.fromkeys(compress(texts, map(is_, found, repeat(None))))
        self.index.update(zip(new, range(len(self.strings), len(self.strings) + len(new))))
        self.strings.extend(new)
        return array("i", list(map(get, texts)))

    def append_many(self, texts: List[str]) -> range:
        """Indexes of ``texts`` appended as they are, without looking them up.

        For the contents of string nodes: mostly distinct, so a lookup would
        cost time and an index entry each for nothing (the file allows repeats).
        """
        first = len(self.strings)
        self.strings.extend(texts)
        return range(first, len(self.strings))


class HeapGraph:
    """Nodes and edges of a heap, one compact array per field.

    Each node's edges are contiguous and in node order. ``edge_to`` holds the
    target's offset in the ``nodes`` array (node index × ``NODE_FIELD_COUNT``),
    as the file does.
    """

    def __init__(self) -> None:
        self.strings = StringTable()
        # 1 + 4 + 8 + 4 bytes per node and 1 + 4 + 4 per edge ("i" is 32-bit:
        # enough for string indexes, element indexes and offsets below 2**31)
        self.node_type = array("b")
        self.node_name = array("i")
        self.node_size = array("q")
        self.node_edges = array("i")
        self.edge_type = array("b")
        self.edge_name = array("i")
        self.edge_to = array("i")

    @property
    def node_count(self) -> int:
        return len(self.node_type)

    @property
    def edge_count(self) -> int:
        return len(self.edge_type)


def _meta() -> Dict[str, object]:
    return {
        "node_fields": NODE_FIELDS,
        "node_types": [NODE_TYPES, "string", "number", "number", "number", "number", "number"],
        "edge_fields": EDGE_FIELDS,
        "edge_types": [EDGE_TYPES, "string_or_number", "node"],
        "trace_function_info_fields": [
            "function_id", "name", "script_name", "script_id", "line", "column",
        ],
        "trace_node_fields": ["id", "function_info_index", "count", "size", "children"],
        "sample_fields": ["timestamp_us", "last_assigned_id"],
        "location_fields": ["object_index", "script_id", "line", "column"],
    }  # fmt: skip


def node_id(index: int) -> int:
    """Node ids are odd, as V8's are for heap objects; the root is 1."""
    return 2 * index + 1


def write_heapsnapshot(graph: HeapGraph, out: BinaryIO) -> None:
    """Stream ``graph`` as ``.heapsnapshot`` JSON into ``out`` (chunk by chunk)."""
    count, edges = graph.node_count, graph.edge_count
    if sum(graph.node_edges) != edges or not (
        len(graph.node_name) == len(graph.node_size) == len(graph.node_edges) == count
    ):
        raise ValueError("heap graph is inconsistent: node fields or edge counts disagree")
    header = {
        "meta": _meta(),
        "node_count": count,
        "edge_count": edges,
        "trace_function_count": 0,
    }
    out.write(b'{"snapshot":' + json.dumps(header, separators=(",", ":")).encode())
    out.write(b',\n"nodes":[')
    # trace_node_id and detachedness are always 0
    ids = range(node_id(0), node_id(count), 2)
    node_columns = (graph.node_type, graph.node_name, ids, graph.node_size, graph.node_edges)
    _write_rows(out, node_columns, b"%d,%d,%d,%d,%d,0,0,", count)
    out.write(b'],\n"edges":[')
    _write_rows(out, (graph.edge_type, graph.edge_name, graph.edge_to), b"%d,%d,%d,", edges)
    out.write(b'],\n"trace_function_infos":[],"trace_tree":[],"samples":[],"locations":[],')
    out.write(b'\n"strings":[')
    strings = graph.strings.strings
    for start in range(0, len(strings), _CHUNK):
        if start:
            out.write(b",")
        # ensure_ascii: lone surrogates (possible in Python strings) stay valid JSON
        chunk = json.dumps(strings[start : start + _CHUNK], ensure_ascii=True)
        out.write(chunk[1:-1].encode("ascii"))
    out.write(b"]}")


def _write_rows(out: BinaryIO, columns: Sequence[Sequence[int]], row: bytes, count: int) -> None:
    """``count`` rows of ``columns`` (arrays or ranges), formatted as ``row``, comma-separated.

    printf-style formatting of a whole chunk runs in C. The chunk's values are
    interleaved into a list by slice assignment (each column's slice becomes
    Python ints in one C loop); every row ends with a comma but the last.
    """
    width = len(columns)
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        values = [0] * (width * (stop - start))
        for offset, column in enumerate(columns):
            values[offset::width] = column[start:stop]
        text = (row * (stop - start)) % tuple(values)
        del values
        out.write(text[:-1] if stop == count else text)
