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
from itertools import compress, repeat
from operator import is_, itemgetter
from typing import BinaryIO, Dict, List, Literal, Optional, Sequence, Tuple

from otel_profiling._memory import return_free_memory

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
        self.index.update(
            zip(new, range(len(self.strings), len(self.strings) + len(new)), strict=True)
        )
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
    texts = [b"%d," % number for number in range(_TEXTS)]
    _write_nodes(out, graph, texts)
    if release:
        _release(graph, ("node_type", "node_name", "node_size", "node_edges"))
    out.write(b'],\n"edges":[')
    _write_edges(out, graph, texts)
    del texts
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


# Every number is written with its trailing comma (the section's last one is cut).
# Numbers below _TEXTS (most string indexes, element indexes, counts, sizes) are
# gathered from a table of their texts, in C, and written with "%s"; a chunk
# of a column with a larger or negative number writes that column with "%d".
_TEXTS = 1 << 14
# A node id is 2 * index + 1: below 10**_ID_DIGITS it is written whole, above
# it as a prefix (the same for a block of nodes) and the odd _ID_DIGITS-digit
# suffix, both in the template, so ids need no formatting at all.
_ID_DIGITS = 4
_ID_BLOCK = 10**_ID_DIGITS // 2  # nodes per id prefix (one chunk)
_TEMPLATES = 32  # node templates kept (a block's fixed fields are part of its template)
# A type (0-9) is one digit, set into the template by a strided copy from the
# column's bytes; 0 marks a type that is not one digit (the chunk then falls
# back to formatting every field).
_TYPE_DIGITS = bytes(ord("0") + value if value < 10 else 0 for value in range(256))
_UNSIGNED: Dict[str, Literal["B", "H", "I", "L", "Q"]] = {
    "b": "B", "h": "H", "i": "I", "l": "L", "q": "Q",
}  # fmt: skip


def _release(graph: HeapGraph, fields: Sequence[str]) -> None:
    """Replace the named arrays by empty ones, freeing the originals for the output."""
    for field in fields:
        setattr(graph, field, array(getattr(graph, field).typecode))
    return_free_memory()


def _gather(texts: List[bytes], column: array, start: int, stop: int) -> Optional[Sequence[bytes]]:
    """``texts[value]`` for the chunk's values, or None if one is outside ``texts``.

    The values are read as unsigned (a negative one becomes too large, instead
    of indexing from the end of ``texts``); ``itemgetter`` indexes them all in C.
    """
    keys = memoryview(column)[start:stop].cast("B").cast(_UNSIGNED[column.typecode])
    try:
        if len(keys) > 1:
            found: Sequence[bytes] = itemgetter(*keys)(texts)
            return found
        return [texts[key] for key in keys]
    except IndexError:
        return None


def _same(column: array, start: int, stop: int) -> Optional[bytes]:
    """The text of the value in rows ``start:stop`` of ``column`` if they all hold it."""
    raw = memoryview(column)[start:stop].tobytes()
    if raw != raw[: column.itemsize] * (stop - start):
        return None
    return b"%d," % column[start]


def _spec(slot: Optional[Sequence[bytes]]) -> bytes:
    """The template's conversion for a field: its texts (with commas), or its numbers."""
    return b"%d," if slot is None else b"%s"


def _write_nodes(out: BinaryIO, graph: HeapGraph, texts: List[bytes]) -> None:
    """The ``nodes`` section: ``type,name,id,self_size,edge_count,0,0,`` per node.

    trace_node_id and detachedness are always 0. A chunk is one block of ids.
    Its template holds, for every row, the type digit, the id, the constant
    fields and whichever of name, self size and edge count is the same in
    every row of the block (a run of one type often is); the others are its
    values (texts from ``texts``, or numbers).
    """
    count = graph.node_count
    types, names, sizes, counts = (
        graph.node_type,
        graph.node_name,
        graph.node_size,
        graph.node_edges,
    )
    ids = range(node_id(0), node_id(count), 2)
    columns = (types, names, ids, sizes, counts)
    plain_row = b"%d,%d,%d,%d,%d,0,0,"
    first = min(count, _ID_BLOCK)  # ids with fewer than _ID_DIGITS + 1 digits
    _write_plain(out, columns, plain_row, 0, first, count)
    suffixes = [b"%0*d," % (_ID_DIGITS, number) for number in range(1, 2 * _ID_BLOCK, 2)]
    # Templates of a whole block by row layout and prefix length (placeholders: NUL bytes).
    templates: Dict[Tuple[bytes, bytes, int], bytes] = {}
    for start in range(first, count, _ID_BLOCK):
        stop = min(start + _ID_BLOCK, count)
        rows = stop - start
        digits = types[start:stop].tobytes().translate(_TYPE_DIGITS)
        if 0 in digits:
            _write_plain(out, columns, plain_row, start, stop, count)
            continue
        fixed = [_same(column, start, stop) for column in (names, sizes, counts)]
        varying = [
            column
            for column, text in zip((names, sizes, counts), fixed, strict=True)
            if text is None
        ]
        fields = [_gather(texts, column, start, stop) for column in varying]
        specs = map(_spec, fields)
        name, size, edges = [next(specs) if text is None else text for text in fixed]
        head = b"\0," + name
        tail = size + edges + b"0,0,"
        prefix = b"%d" % (start // _ID_BLOCK)
        key = (head, tail, len(prefix))
        whole = templates.get(key)
        if whole is None:
            if len(templates) >= _TEMPLATES:
                templates.clear()
            row_start = head + bytes(len(prefix))
            whole = templates[key] = b"".join([row_start + suffix + tail for suffix in suffixes])
        width = len(whole) // _ID_BLOCK
        template = bytearray(whole[: rows * width])
        template[::width] = digits
        for offset, digit in enumerate(prefix, len(head)):
            template[offset::width] = bytes((digit,)) * rows
        values: List[object] = [None] * (len(varying) * rows)
        for offset, (found, column) in enumerate(zip(fields, varying, strict=True)):
            values[offset :: len(varying)] = column[start:stop] if found is None else found
        del fields
        text = bytes(template) % tuple(values)
        del template, values
        out.write(text[:-1] if stop == count else text)


def _write_edges(out: BinaryIO, graph: HeapGraph, texts: List[bytes]) -> None:
    """The ``edges`` section: ``type,name_or_index,to_node,`` per edge.

    The template holds the type digit; the name is a text from ``texts`` (or
    a number) and ``to_node`` a number (they are many and all different).
    """
    count = graph.edge_count
    types, names, targets = graph.edge_type, graph.edge_name, graph.edge_to
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        rows = stop - start
        digits = types[start:stop].tobytes().translate(_TYPE_DIGITS)
        if 0 in digits:
            _write_plain(out, (types, names, targets), b"%d,%d,%d,", start, stop, count)
            continue
        found = _gather(texts, names, start, stop)
        row = b"\0," + _spec(found) + b"%d,"
        template = bytearray(row * rows)
        template[:: len(row)] = digits
        values: List[object] = [None] * (2 * rows)
        values[::2] = names[start:stop] if found is None else found
        values[1::2] = targets[start:stop]
        del found
        text = bytes(template) % tuple(values)
        del template, values
        out.write(text[:-1] if stop == count else text)


def _write_plain(
    out: BinaryIO, columns: Sequence[Sequence[int]], row: bytes, start: int, stop: int, count: int
) -> None:
    """Rows ``start:stop`` of ``columns`` (arrays or ranges) formatted as ``row``, in C.

    The values are interleaved into a list by slice assignment (each column's
    slice becomes Python ints in one C loop); the last of ``count`` rows loses
    its comma.
    """
    if start >= stop:
        return
    width = len(columns)
    values = [0] * (width * (stop - start))
    for offset, column in enumerate(columns):
        values[offset::width] = column[start:stop]
    text = (row * (stop - start)) % tuple(values)
    del values
    out.write(text[:-1] if stop == count else text)
