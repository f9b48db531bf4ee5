"""Edges and node fields of a ``HeapGraph``, added in bulk (see ``heap_graph``).

Objects are walked in runs of one kind: each run's referents, edge names and
targets are computed with ``map`` over the whole run, so the per-object and
per-edge work runs in C. Referents seen for the first time (strings, ints and
other untracked objects) are appended to the node list in bulk; leaves (no
edges) only get a zero edge count. Integers reach the arrays through an
``array`` built from a list (one C loop), about twice as fast as
``array.extend`` with a list or an iterator.
"""

from __future__ import annotations

import gc
import sys
from array import array
from itertools import chain, compress, groupby, repeat
from operator import is_, is_not, itemgetter
from types import FunctionType, ModuleType
from typing import Any, Dict, List, Sequence, Tuple

from otel_profiling.formats.heapsnapshot import (
    CLOSURE,
    CODE,
    ELEMENT,
    INTERNAL,
    NODE_FIELD_COUNT,
    NUMBER,
    OBJECT,
    PROPERTY,
    STRING,
    HeapGraph,
)

# How an object is walked, from its type (``type_info``); LEAF and STR have no
# edges to derive, functions are walked as GENERIC; SUBDICT: a dict subclass.
GENERIC, DICT, SEQ, MODULE, LEAF, STR, FUNC, SUBDICT = range(8)
TypeInfo = Tuple[int, int, int]  # (node type, name index, kind)
_MAX_ELEMENT = 2**31 - 1
_NAME_SLICE = slice(0, 80)  # strings are named by their first 80 characters
_SEGMENT = 8192  # objects classified at a time
_STR_ONLY = {str}
_INT_SIZE = array("i").itemsize
_ELEMENT_TABLE = 4096  # sequences shorter than this get their element names by table
_GROUP_ORDER = (SEQ, GENERIC, DICT, SUBDICT, MODULE, LEAF)
_MASKS = {kind: bytes(kind == byte for byte in range(256)) for kind in range(8)}  # for translate
_LEAF_TYPES = (int, float, complex, bool, bytes, type(None), type(Ellipsis), range)


class GraphBuilder:
    """Adds the edges of ``objs`` (node ``base`` onwards) to ``graph``, then their fields.

    ``objs`` grows as new referents are found; ``index`` maps ``id`` to the
    node's offset in the ``nodes`` array (node index × field count).
    """

    def __init__(self, graph: HeapGraph, base: int) -> None:
        self.graph, self.base = graph, base
        self.types: Dict[type, TypeInfo] = {}
        self.walk_kinds: Dict[type, int] = {}
        self.labels: Dict[type, int] = {}
        self.dict_name = graph.strings.add("__dict__")
        self.key_name = graph.strings.add("key")
        self.elements: List[bytes] = [b""]  # element names 0..n-1, as array bytes, by n
        self.objs: List[Any] = []
        self.runs: List[Tuple[int, int]] = []  # (kind, count) at the start of objs
        self.index: Dict[int, int] = {}

    def group(self, found: List[Any]) -> List[Any]:
        """``found`` as the first nodes, grouped by kind so that each kind is walked in bulk.

        ``found`` itself (gc.get_objects() lists its own result) is left out.
        """
        self._learn(found)
        kinds = bytes(map(self.walk_kinds.__getitem__, map(type, found)))
        objs = self.objs
        for kind in _GROUP_ORDER:
            group = list(compress(found, kinds.translate(_MASKS[kind])))
            if kind == SEQ:
                group = list(compress(group, map(is_not, group, repeat(found))))
            self.runs.append((kind, len(group)))
            objs.extend(group)
        step, base = NODE_FIELD_COUNT, self.base
        self.index = dict(zip(map(id, objs), range(base * step, (base + len(objs)) * step, step)))
        return objs

    def target(self, obj: Any) -> int:
        """The node offset of ``obj``, adding it as a new node if unseen (one at a time)."""
        found = self.index.get(id(obj))
        if found is None:
            found = self.index[id(obj)] = (self.base + len(self.objs)) * NODE_FIELD_COUNT
            self.objs.append(obj)
        return found

    def walk(self) -> None:
        """Edges of every object in ``objs``, including those appended on the way."""
        objs = self.objs
        position = 0
        for kind, count in self.runs:  # grouped by ``group``
            for start in range(position, position + count, _SEGMENT):
                self._run(kind, objs[start : min(start + _SEGMENT, position + count)])
            position += count
        while position < len(objs):  # found on the way: classified a segment at a time
            segment = objs[position : position + _SEGMENT]
            self._learn(segment)
            start = 0
            for kind, run in groupby(map(self.walk_kinds.__getitem__, map(type, segment))):
                count = len(list(run))
                self._run(kind, segment[start : start + count])
                start += count
            position += len(segment)
            segment = []
        self.index = {}

    def _learn(self, objs: List[Any]) -> None:
        for t in set(map(type, objs)):
            if t not in self.walk_kinds:
                if t not in self.types:
                    self.types[t] = type_info(t, self.graph.strings)
                kind = self.types[t][2]
                self.walk_kinds[t] = LEAF if kind == STR else GENERIC if kind == FUNC else kind

    def _run(self, kind: int, run: List[Any]) -> None:
        """Edges of a run of objects of one kind, in order."""
        graph = self.graph
        if kind == LEAF:
            graph.node_edges.frombytes(bytes(len(run) * _INT_SIZE))
            return
        if kind in (DICT, SUBDICT):
            counts, refs = self._dicts(run, kind)
        else:
            ref_lists = list(map(list, run)) if kind == SEQ else list(map(gc.get_referents, run))
            counts = list(map(len, ref_lists))
            refs = list(chain.from_iterable(ref_lists))
            del ref_lists
            if kind == SEQ:
                graph.edge_type.frombytes(bytes([ELEMENT]) * len(refs))
                graph.edge_name.frombytes(self._element_names(counts))
            else:
                graph.edge_type.frombytes(bytes([INTERNAL]) * len(refs))
                graph.edge_name.extend(self._labels(refs, kind))
        graph.node_edges.extend(array("i", counts))
        self._targets(refs)

    def _targets(self, refs: List[Any]) -> None:
        """``edge_to`` for ``refs``; unseen referents become nodes, in order of first use."""
        ids = list(map(id, refs))
        index_get = self.index.get
        targets: List[Any] = list(map(index_get, ids))  # None where new
        try:
            self.graph.edge_to.extend(array("i", targets))
            return
        except TypeError:  # None: some referents are new
            pass
        fresh = dict(compress(zip(ids, refs), map(is_, targets, repeat(None))))
        start = (self.base + len(self.objs)) * NODE_FIELD_COUNT
        step = NODE_FIELD_COUNT
        added = dict(zip(fresh, range(start, start + len(fresh) * step, step)))
        self.index.update(added)
        self.objs.extend(fresh.values())
        # the known targets stay; the new ones come from the small dict of this run
        self.graph.edge_to.extend(array("i", list(map(added.get, ids, targets))))

    def _element_names(self, counts: List[int]) -> bytes:
        """Element indexes ``0..n-1`` of each sequence, as the bytes of an ``i`` array."""
        top = max(counts, default=0)
        if top >= _ELEMENT_TABLE:
            return array("i", list(chain.from_iterable(map(range, counts)))).tobytes()
        table = self.elements
        if top >= len(table):
            table.extend(array("i", range(n)).tobytes() for n in range(len(table), top + 1))
        return b"".join(map(table.__getitem__, counts))

    def _labels(self, refs: List[Any], kind: int) -> array:
        """``internal`` edge names: the referent's type (``__dict__`` for a module's dict)."""
        if kind == MODULE:
            return array("i", [self.dict_name if type(r) is dict else 0 for r in refs])
        labels = self.labels
        try:
            return array("i", list(map(labels.get, map(type, refs))))
        except TypeError:  # None: types not seen yet
            pass
        for t in set(map(type, refs)) - labels.keys():
            labels[t] = self.graph.strings.add(t.__name__)
        return array("i", list(map(labels.__getitem__, map(type, refs))))

    def _dicts(self, dicts: List[Any], kind: int) -> Tuple[List[int], List[Any]]:
        """Edge types and names of dicts; their edge counts and targets.

        Each dict is copied atomically without running Python code (a
        subclass's overrides, such as ``__iter__`` that ``dict.copy`` would
        call, are bypassed by ``dict.items``), so another thread cannot change
        it between reading its keys and its values.
        """
        if kind == DICT:
            copies = list(map(dict.copy, dicts))
        else:
            copies = list(map(dict, map(dict.items, dicts)))
        keys = list(chain.from_iterable(copies))
        if set(map(type, keys)) <= _STR_ONLY:
            self.graph.edge_type.frombytes(bytes([PROPERTY]) * len(keys))
            self.graph.edge_name.extend(self.graph.strings.add_many(keys))
            return list(map(len, copies)), list(chain.from_iterable(map(dict.values, copies)))
        del keys
        counts: List[int] = []
        targets: List[Any] = []
        for copy in copies:  # other keys: one dict at a time
            items = list(copy.items())
            _dict_edges(self.graph, items, self.key_name)
            refs = _dict_targets(items)
            counts.append(len(refs))
            targets.extend(refs)
        return counts, targets

    def node_fields(self) -> None:
        """Type, name and self size of every object node, in bulk after the walk."""
        graph, objs = self.graph, self.objs
        base = len(graph.node_type)
        infos = list(map(self.types.__getitem__, map(type, objs)))
        graph.node_type.frombytes(bytes(map(itemgetter(0), infos)))
        graph.node_name.extend(array("i", list(map(itemgetter(1), infos))))
        kinds = bytes(map(itemgetter(2), infos))
        del infos
        _sizes(graph, objs)
        node_name = graph.node_name
        # str's own slicing: a subclass's __getitem__ never runs
        positions = list(compress(range(len(objs)), kinds.translate(_MASKS[STR])))
        texts = list(map(str.__getitem__, map(objs.__getitem__, positions), repeat(_NAME_SLICE)))
        for position, name in zip(positions, graph.strings.add_many(texts)):
            node_name[base + position] = name
        del texts
        for position in compress(range(len(objs)), kinds.translate(_MASKS[FUNC])):
            name = getattr(objs[position], "__qualname__", "") or "function"
            node_name[base + position] = graph.strings.add(name)


def type_info(t: type, strings: Any) -> TypeInfo:
    """(node type, name index, kind) for objects of type ``t``."""
    if t.__module__ in ("builtins", "__builtin__"):
        label = t.__qualname__
    else:
        label = f"{t.__module__}.{t.__qualname__}"
    name = strings.add(label)
    if issubclass(t, str):
        return STRING, name, STR
    if issubclass(t, dict):
        return OBJECT, name, DICT if t is dict else SUBDICT
    if t is list or t is tuple:
        return OBJECT, name, SEQ
    if t is FunctionType:
        return CLOSURE, name, FUNC
    if issubclass(t, ModuleType):
        return OBJECT, name, MODULE
    if t in _LEAF_TYPES:
        return (NUMBER if t in (int, float, complex, bool) else OBJECT), name, LEAF
    if t.__name__ == "code":
        return CODE, name, GENERIC
    return OBJECT, name, GENERIC


def _sizes(graph: HeapGraph, objs: List[Any]) -> None:
    """``sys.getsizeof`` of each object; a broken ``__sizeof__`` counts as 0."""
    base = len(graph.node_size)
    try:
        graph.node_size.extend(array("q", list(map(sys.getsizeof, objs))))
    except Exception:  # noqa: BLE001 - a broken __sizeof__: one object at a time
        del graph.node_size[base:]
        for obj in objs:
            try:
                graph.node_size.append(sys.getsizeof(obj))
            except Exception:  # noqa: BLE001
                graph.node_size.append(0)


def _dict_edges(graph: HeapGraph, items: Sequence[Tuple[Any, Any]], key_name: int) -> None:
    """Edge types and names of a dict with some non-``str`` keys (the slow path)."""
    types, labels, add = graph.edge_type.append, graph.edge_name.append, graph.strings.add
    for key, _ in items:
        kt = type(key)
        if kt is str:
            types(PROPERTY)
            labels(add(key))
        elif kt is int and 0 <= key <= _MAX_ELEMENT:
            types(ELEMENT)
            labels(key)
        else:
            types(INTERNAL)
            labels(key_name)
            types(PROPERTY)
            labels(add(f"[{kt.__name__}]"))


def _dict_targets(items: Sequence[Tuple[Any, Any]]) -> List[Any]:
    """Edge targets matching ``_dict_edges``: a key object precedes its value when not named."""
    targets: List[Any] = []
    for key, value in items:
        kt = type(key)
        if not (kt is str or (kt is int and 0 <= key <= _MAX_ELEMENT)):
            targets.append(key)
        targets.append(value)
    return targets
