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

import io
import json
from array import array
from typing import Any, BinaryIO, Dict, Iterable, List, Sequence

from otel_profiling._memory import return_free_memory
from otel_profiling.formats.calltree import Frame, add_stack, new_root
from otel_profiling.formats.format import (
    ProfileFormat,
    ProfileFormatError,
    ProfileTree,
    json_document,
    json_object,
)
from otel_profiling.profile import ProfileKind

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
_CHUNK = 16384  # strings encoded at a time
_ROWS = 4096  # rows formatted at a time: their temporaries stay in the CPU's cache


class _Indexes(Dict[str, int]):
    """Index of each string in ``strings``; a string looked up for the first time is added."""

    def __init__(self, strings: List[str]) -> None:
        super().__init__(zip(strings, range(len(strings)), strict=True))
        self.strings = strings

    def __missing__(self, text: str) -> int:
        found = self[text] = len(self.strings)
        self.strings.append(text)
        return found


class StringTable:
    """Strings by first use; ``add`` returns the index (a dict lookup when known)."""

    def __init__(self) -> None:
        self.strings: List[str] = [""]
        self.index = _Indexes(self.strings)

    def add(self, text: str) -> int:
        return self.index[text]

    def add_many(self, texts: Iterable[str]) -> List[int]:
        """Indexes of ``texts`` (exact ``str``: no Python ``__hash__``), new ones added in order."""
        return list(map(self.index.__getitem__, texts))

    def append_many(self, texts: Iterable[str]) -> range:
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
        # 1 + 4 + 8 + 4 bytes per node and 1 + 4 + 4 per edge ("I" is 32-bit:
        # enough for string indexes, element indexes and offsets below 2**31).
        # Unsigned, as no value is negative: an unsigned array stores an int
        # without parsing it as an argument, several times faster per value.
        self.node_type = array("b")
        self.node_name = array("I")
        self.node_size = array("Q")
        self.node_edges = array("I")
        self.edge_type = array("b")
        self.edge_name = array("I")
        self.edge_to = array("I")

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


def encode_heapsnapshot(graph: HeapGraph, *, release: bool = False) -> bytes:
    """``graph`` as ``.heapsnapshot`` bytes (see ``write_heapsnapshot``).

    The buffer is first sized to the least the text can take (every row's
    numbers at one digit), in one allocation: growing it step by step from
    nothing would leave each outgrown copy behind in the process's memory.
    """
    out = io.BytesIO()
    least = graph.node_count * 2 * NODE_FIELD_COUNT + graph.edge_count * 2 * len(EDGE_FIELDS)
    if least:
        out.seek(least - 1)
        out.write(b"\0")
        out.seek(0)
    write_heapsnapshot(graph, out, release=release)
    out.truncate()  # nothing to cut: the text is never shorter than ``least``
    return out.getvalue()


def write_heapsnapshot(graph: HeapGraph, out: BinaryIO, *, release: bool = False) -> None:
    """Stream ``graph`` as ``.heapsnapshot`` JSON into ``out`` (chunk by chunk).

    ``release=True`` empties each of the graph's arrays (and then its string
    table) as soon as its section is written, so that the output can reuse
    their memory: the graph is left empty. The consistency check runs first,
    so a refused graph is neither written nor emptied.
    """
    count, edges = graph.node_count, graph.edge_count
    if not (
        len(graph.node_name) == len(graph.node_size) == len(graph.node_edges) == count
        and len(graph.edge_name) == len(graph.edge_to) == edges == sum(graph.node_edges)
    ):
        raise ValueError(
            "heap graph is inconsistent: node fields, edge fields or edge counts disagree"
        )
    header = {
        "meta": _meta(),
        "node_count": count,
        "edge_count": edges,
        "trace_function_count": 0,
    }
    out.write(b'{"snapshot":' + json.dumps(header, separators=(",", ":")).encode())
    out.write(b',\n"nodes":[')
    ids = range(node_id(0), node_id(count), 2)
    # trace_node_id and detachedness are always 0
    node_columns = (graph.node_type, graph.node_name, ids, graph.node_size, graph.node_edges)
    _write_rows(out, b"%d,%d,%d,%d,%d,0,0,", node_columns, count)
    del node_columns  # so that release frees the arrays
    if release:
        _release(graph, ("node_type", "node_name", "node_size", "node_edges"))
    out.write(b'],\n"edges":[')
    _write_rows(out, b"%d,%d,%d,", (graph.edge_type, graph.edge_name, graph.edge_to), edges)
    if release:
        _release(graph, ("edge_type", "edge_name", "edge_to"))
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
    if release:
        del strings
        graph.strings = StringTable()


def _release(graph: HeapGraph, fields: Sequence[str]) -> None:
    """Replace the named arrays by empty ones, freeing the originals for the output."""
    for field in fields:
        setattr(graph, field, array(getattr(graph, field).typecode))
    return_free_memory()


def _write_rows(out: BinaryIO, row: bytes, columns: Sequence[Sequence[int]], count: int) -> None:
    """``count`` rows, each ``row`` formatted with a value from each column.

    A chunk of rows at a time: the columns' values are interleaved into one
    list by slice assignment and formatted with one ``%`` of the repeated
    row, so each number is written by C code. The section's last row loses
    its trailing comma.
    """
    width = len(columns)
    for start in range(0, count, _ROWS):
        stop = min(start + _ROWS, count)
        values = [0] * ((stop - start) * width)
        for offset, column in enumerate(columns):
            values[offset::width] = column[start:stop]
        text = row * (stop - start) % tuple(values)
        out.write(text[:-1] if stop == count else text)


def decode_heapsnapshot(doc: Dict[str, Any]) -> ProfileTree:
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


class HeapsnapshotFormat(ProfileFormat):
    """V8's heap snapshot, written from a ``HeapGraph``; read back as a per-type summary.

    ``encode`` releases the graph's arrays as it writes them (the graph is
    used up), so that the output can reuse their memory.
    """

    readable = True
    writes_from = "a heap graph (HeapSnapshotProfiler)"

    def __init__(self) -> None:
        super().__init__(
            "heapsnapshot", "heapsnapshot", "application/json", [ProfileKind.HEAP_SNAPSHOT]
        )

    def accepts(self, capture: type) -> bool:
        return capture is HeapGraph

    def encode(self, capture: object) -> bytes:
        if isinstance(capture, HeapGraph):
            return encode_heapsnapshot(capture, release=True)
        return super().encode(capture)

    def decode(self, data: bytes) -> ProfileTree:
        return decode_heapsnapshot(json_document(data))

    def sniff(self, data: bytes) -> bool:
        doc = json_object(data)
        return doc is not None and "snapshot" in doc and "strings" in doc


FORMAT = HeapsnapshotFormat()
