"""Edges and node fields of a ``HeapGraph``, added in bulk (see ``heap_graph``).

Objects are walked in runs of one kind: each run's node fields, referents,
edge names and targets are computed with ``map`` over the whole run, so the
per-object and per-edge work runs in C. Referents seen for the first time are
appended to the nodes in bulk, grouped by kind; leaves (no edges) only get a
zero edge count.

The index (object → node offset) holds only objects that more than one
reference holds: an object that one reference holds is met once, by its
referrer, and needs no lookup. ``sys.getrefcount`` tells them apart; every
count is compared with what the builder's own lists add, measured once
(``_refcount_in_list``). A new referent's offset is set straight at its
edge's position; only one met again within the same run is looked up. Freed
memory is handed back to the system as the walk goes (``return_free_memory``).
Integers reach the arrays through an ``array`` built from a list (one C
loop), about twice as fast as ``array.extend`` with a list or an iterator.
"""

from __future__ import annotations

import gc
import sys
import sysconfig
from array import array
from collections import deque
from itertools import chain, compress, count, repeat
from operator import add, eq, gt, is_, le, not_
from types import FunctionType, MethodDescriptorType, ModuleType
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from otel_profiling._memory import return_free_memory
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
# edges to derive, FUNC is walked as GENERIC and named; SUBDICT: a dict subclass.
GENERIC, DICT, SEQ, MODULE, LEAF, STR, FUNC, SUBDICT = range(8)
TypeInfo = Tuple[int, int, int]  # (node type, name index, kind)
_MAX_ELEMENT = 2**31 - 1
_NAME_SLICE = slice(0, 80)  # strings are named by their first 80 characters
_SEGMENT = 8192  # objects walked at a time
# Segments between handing freed memory back: the arrays' growth and the
# segments' temporaries leave freed blocks behind that otherwise add a
# quarter to the walk's peak; each time costs about half a millisecond.
_TRIM_EVERY = 16
_STR_ONLY = {str}
_INT_SIZE = array("i").itemsize
_ELEMENT_TABLE = 4096  # sequences shorter than this get their element names by table
_GROUP_ORDER = (SEQ, GENERIC, FUNC, DICT, SUBDICT, MODULE, LEAF, STR)
_FLIP = bytes.maketrans(b"\0\1", b"\1\0")  # negates a mask of 0s and 1s
_MASKS = {kind: bytes(kind == byte for byte in range(256)) for kind in range(8)}  # for translate
# A free-threaded build defers some reference counts: every object is indexed.
_COUNTS_EXACT = not sysconfig.get_config_var("Py_GIL_DISABLED")
_EMBEDDED_VALUES = sys.version_info >= (3, 13)  # a __dict__ can share its instance's values
# The index's key for an object: its address rotated by 4 bits, unique while
# it lives, whatever its own __hash__. ``id`` would leave the low 4 bits zero
# (objects are 16-byte aligned), crowding the first slots a dict probes.
_key = object.__hash__
_LEAF_TYPES = (int, float, complex, bool, bytes, type(None), type(Ellipsis), range)


class GraphBuilder:
    """Adds the nodes of ``objs`` (node ``base`` onwards) to ``graph``, with their edges.

    ``objs`` grows as new referents are found; ``index`` maps ``_key(obj)`` to the
    node's offset in the ``nodes`` array (node index × field count) for the
    objects that may be met more than once.
    """

    def __init__(self, graph: HeapGraph, base: int) -> None:
        self.graph, self.base = graph, base
        self.node_types: Dict[type, int] = {}
        self.type_names: Dict[type, int] = {}
        self.walk_kinds: Dict[type, int] = {}
        self.labels: Dict[type, int] = {}
        self.sizers: Dict[type, Optional[Tuple[Any, int]]] = {}
        self.dict_name = graph.strings.add("__dict__")
        self.key_name = graph.strings.add("key")
        self.elements: List[bytes] = [b""]  # element names 0..n-1, as array bytes, by n
        self.objs: List[Any] = []
        self.runs: List[Tuple[int, int]] = []  # (kind, count) of consecutive objs
        self.walking = -1  # the run being walked: later ones may still grow
        self.index: Dict[int, int] = {}
        self.singles: List[Any] = []
        # What sys.getrefcount reads for an object that one list holds (the
        # list and the call): the base of every "held by one reference" test.
        self.listed = _refcount_in_list()

    def group(self, found: List[Any]) -> List[Any]:
        """Seed the nodes with ``found``, the gc-tracked objects, grouped by kind.

        An object held by exactly one reference is left out of the index: its
        one referrer meets it during the walk (``_targets``), and if that
        referrer is invisible to gc (C code), ``_recover`` adds it at the end.
        Only the rest, objects that several references hold, are indexed
        here. (``gc.get_objects()`` leaves its own result out of it.)
        """
        if _COUNTS_EXACT:
            once = bytes(map(eq, map(sys.getrefcount, found), repeat(1 + self.listed)))
        else:
            once = bytes(len(found))
        self.singles = list(compress(found, once))
        seeds = list(compress(found, once.translate(_FLIP)))
        del once
        self.index = self._place(seeds)
        return self.objs

    def target(self, obj: Any) -> int:
        """The node offset of ``obj``, adding it as a new node if unseen (one at a time)."""
        found = self.index.get(_key(obj))
        if found is None:
            found = self.index[_key(obj)] = self._place([obj])[_key(obj)]
        return found

    def walk(self) -> None:
        """Edges of every object in ``objs``, including those appended on the way."""
        objs, runs = self.objs, self.runs
        position = segments = 0
        while True:
            while self.walking + 1 < len(runs):
                self.walking += 1
                kind, length = runs[self.walking]
                for start in range(position, position + length, _SEGMENT):
                    self._run(kind, objs[start : min(start + _SEGMENT, position + length)])
                    segments += 1
                    if segments % _TRIM_EVERY == 0:
                        return_free_memory()
                position += length
            if not self._recover():
                break
        self.index = {}

    def _place(self, new: List[Any]) -> Dict[int, int]:
        """Append ``new`` to the nodes (see ``_append``); their keys → node offsets."""
        first = len(self.objs)
        self._append(new)
        step = NODE_FIELD_COUNT
        start, stop = (self.base + first) * step, (self.base + len(self.objs)) * step
        return dict(zip(map(_key, self.objs[first:]), range(start, stop, step), strict=True))

    def _append(self, new: List[Any], types: Optional[List[type]] = None) -> List[Optional[bytes]]:
        """Append ``new`` to the nodes grouped by walk kind; each group's mask over ``new``.

        Grouped so that each kind is walked in bulk: the nodes follow the
        order of the masks (None: the group is all of ``new``), each group in
        the order of ``new``. ``types``: those of ``new``, if already read.
        """
        if types is None:
            types = list(map(type, new))
        try:
            kinds = bytes(map(self.walk_kinds.__getitem__, types))
        except KeyError:  # types not seen yet
            self._learn(types)
            kinds = bytes(map(self.walk_kinds.__getitem__, types))
        del types
        present = [kind for kind in _GROUP_ORDER if kinds.find(kind) >= 0]
        runs, masks = self.runs, []
        for kind in present:
            mask = None if len(present) == 1 else kinds.translate(_MASKS[kind])
            group = new if mask is None else list(compress(new, mask))
            if len(runs) - 1 > self.walking and runs[-1][0] == kind:
                runs[-1] = (kind, runs[-1][1] + len(group))
            else:
                runs.append((kind, len(group)))
            self.objs.extend(group)
            masks.append(mask)
        return masks

    def _recover(self) -> bool:
        """Add the objects held once that the walk did not meet; True if there were any.

        Their one reference is invisible to gc (held by C code). A met object
        is also held by ``objs``, so its count is one more than a missed one's
        (the referrer, ``singles`` and the call).
        """
        singles, self.singles = self.singles, []
        counts = list(map(sys.getrefcount, singles))  # before compress holds an item
        missed = list(compress(singles, map(le, counts, repeat(1 + self.listed))))
        del singles
        if missed:
            self.index.update(self._place(missed))
        return bool(missed)

    def _learn(self, types: List[type]) -> None:
        for t in set(types) - self.walk_kinds.keys():
            self.node_types[t], self.type_names[t], self.walk_kinds[t] = type_info(
                t, self.graph.strings
            )

    def _run(self, kind: int, run: List[Any]) -> None:
        """Node fields and edges of a run of objects of one kind, in order."""
        graph = self.graph
        self._fields(kind, run)
        if kind in (LEAF, STR):
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
                types = list(map(type, refs))
                graph.edge_type.frombytes(bytes([INTERNAL]) * len(refs))
                graph.edge_name.extend(self._labels(refs, kind, types))
                graph.node_edges.extend(array("i", counts))
                self._targets(refs, types)
                return
        graph.node_edges.extend(array("i", counts))
        self._targets(refs)

    def _targets(self, refs: List[Any], types: Optional[List[type]] = None) -> None:
        """``edge_to`` for ``refs``; unseen referents become nodes, grouped by kind.

        ``types``: those of ``refs``, if the run already read them.
        """
        targets: List[Any] = list(map(self.index.get, map(_key, refs)))  # None where new
        try:
            self.graph.edge_to.extend(array("i", targets))
            return
        except TypeError:  # None: some referents are new
            pass
        missing = list(map(is_, targets, repeat(None)))
        new = list(compress(refs, missing))
        where = list(compress(range(len(refs)), missing))
        if types is not None:
            types = list(compress(types, missing))
        # Those of ``new`` that something else holds too, or that ``refs``
        # holds more than once: only they can be met again.
        if _COUNTS_EXACT:
            shared = list(compress(count(), map(gt, map(sys.getrefcount, new), self._once(new))))
        else:
            shared = list(range(len(new)))
        firsts: Dict[int, int] = {}
        if shared:
            keep, firsts = _first_occurrences(new, where, shared)
            if keep is not None:
                new, where = list(compress(new, keep)), list(compress(where, keep))
                types = None if types is None else list(compress(types, keep))
        first = len(self.objs)
        masks = self._append(new, types)
        del new
        # Each placed referent's offset, set at its position in ``refs``: the
        # groups follow one another, each in the order of ``refs``.
        step = NODE_FIELD_COUNT
        offset = (self.base + first) * step
        for mask in masks:
            at = where if mask is None else list(compress(where, mask))
            stop = offset + len(at) * step
            deque(map(targets.__setitem__, at, range(offset, stop, step)), 0)
            offset = stop
        if firsts:
            # indexed at the offsets just set, to be found when met again
            self.index.update(zip(firsts, map(targets.__getitem__, firsts.values()), strict=True))
            # a referent that ``refs`` holds more than once takes its first one's offset
            again = list(map(is_, targets, repeat(None)))
            if any(again):
                found = map(self.index.__getitem__, map(_key, compress(refs, again)))
                deque(map(targets.__setitem__, compress(count(), again), found), 0)
        self.graph.edge_to.extend(array("i", targets))

    def _once(self, listed: List[Any]) -> Iterator[int]:
        """The reference count each of ``listed`` (a run's new referents) has if held once.

        Held once: by its one referrer. It then also has the run's ``refs``,
        ``listed`` and the call (``_refcount_in_list``), and, if gc-tracked,
        ``singles``.
        """
        return map(add, map(gc.is_tracked, listed), repeat(2 + self.listed))

    def _element_names(self, counts: List[int]) -> bytes:
        """Element indexes ``0..n-1`` of each sequence, as the bytes of an ``i`` array."""
        top = max(counts, default=0)
        if top >= _ELEMENT_TABLE:
            return array("i", list(chain.from_iterable(map(range, counts)))).tobytes()
        table = self.elements
        if top >= len(table):
            table.extend(array("i", range(n)).tobytes() for n in range(len(table), top + 1))
        return b"".join(map(table.__getitem__, counts))

    def _labels(self, refs: List[Any], kind: int, types: List[type]) -> array:
        """``internal`` edge names: the referent's type (``__dict__`` for a module's dict)."""
        if kind == MODULE:
            return array("i", [self.dict_name if type(r) is dict else 0 for r in refs])
        labels = self.labels
        try:
            return array("i", list(map(labels.get, types)))
        except TypeError:  # None: types not seen yet
            pass
        for t in set(types) - labels.keys():
            labels[t] = self.graph.strings.add(t.__name__)
        return array("i", list(map(labels.__getitem__, types)))

    def _dicts(self, dicts: List[Any], kind: int) -> Tuple[List[int], List[Any]]:
        """Edge types and names of dicts; their edge counts and targets.

        Each dict is copied atomically without running Python code (a
        subclass's overrides, such as ``__iter__`` that ``dict.copy`` would
        call, are bypassed by ``dict.items``), so another thread cannot change
        it between reading its keys and its values.
        """
        if kind == DICT:
            copies = list(map(dict.copy, dicts))
            if _EMBEDDED_VALUES:
                # gc reports nothing for an instance's __dict__ whose values the
                # instance stores (3.13+): the instance reports them, once.
                for position in compress(
                    range(len(dicts)), map(not_, map(gc.get_referents, dicts))
                ):
                    copies[position] = {}
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

    def _fields(self, kind: int, run: List[Any]) -> None:
        """Type, name and self size of each object of a run (just walked: still in cache)."""
        graph = self.graph
        types = list(map(type, run))
        # often the whole run is one type: its fields are then repeated, not looked up
        one = types[0] if types.count(types[0]) == len(types) else None
        if one is not None:
            graph.node_type.frombytes(bytes((self.node_types[one],)) * len(run))
        else:
            graph.node_type.frombytes(bytes(map(self.node_types.__getitem__, types)))
        if kind == STR:  # named by their first characters; str's own slicing, never a subclass's
            short = one is str and max(map(len, run)) <= _NAME_SLICE.stop
            texts = run if short else list(map(str.__getitem__, run, repeat(_NAME_SLICE)))
            graph.node_name.extend(array("i", graph.strings.append_many(texts)))
        elif kind == FUNC:
            add = graph.strings.add
            names = [add(getattr(f, "__qualname__", "") or "function") for f in run]
            graph.node_name.extend(array("i", names))
        elif one is not None:
            graph.node_name.extend(array("i", (self.type_names[one],)) * len(run))
        else:
            graph.node_name.extend(array("i", list(map(self.type_names.__getitem__, types))))
        self._sizes(run, one)

    def _sizes(self, objs: List[Any], one: Optional[type]) -> None:
        """``sys.getsizeof`` of each object; a broken ``__sizeof__`` counts as 0.

        For a run of one type whose ``__sizeof__`` is built in, that method is
        called directly (a fifth of ``getsizeof``'s cost) and ``getsizeof``'s
        addition, the same for every object of the type, is added.
        """
        sizes = self.graph.node_size
        base = len(sizes)
        try:
            sizer = None if one is None else self._sizer(one, objs[0])
            if sizer is None:
                sizes.extend(array("q", list(map(sys.getsizeof, objs))))
            else:
                sizeof, extra = sizer
                found = map(sizeof, objs)
                sizes.extend(array("q", list(map(add, found, repeat(extra)) if extra else found)))
        except Exception:  # noqa: BLE001 - a broken __sizeof__: one object at a time
            del sizes[base:]
            for obj in objs:
                try:
                    sizes.append(sys.getsizeof(obj))
                except Exception:  # noqa: BLE001
                    sizes.append(0)

    def _sizer(self, t: type, sample: Any) -> Optional[Tuple[Any, int]]:
        """``(t.__sizeof__, what getsizeof adds)`` if that is the same for every ``t``."""
        if t not in self.sizers:
            sizeof: Any = t.__sizeof__  # unbound: called with the object
            # getsizeof adds the gc header, a per-type constant except for types themselves
            same = isinstance(sizeof, MethodDescriptorType) and not issubclass(t, type)
            self.sizers[t] = (sizeof, sys.getsizeof(sample) - sizeof(sample)) if same else None
        return self.sizers[t]


def _first_occurrences(
    new: List[Any], where: List[int], shared: List[int]
) -> Tuple[Optional[bytearray], Dict[int, int]]:
    """A mask over ``new`` dropping repeats (None: there are none), and keys → positions.

    Only one of ``shared`` (positions in ``new``) can repeat: it keeps its first
    position, given as its position in ``refs`` (from ``where``).
    """
    shared_keys = list(map(_key, map(new.__getitem__, shared)))
    # key → its first position
    firsts = dict(zip(reversed(shared_keys), reversed(shared), strict=True))
    at = dict(zip(firsts, map(where.__getitem__, firsts.values()), strict=True))
    if len(firsts) == len(shared):
        return None, at
    keep = bytearray(b"\1") * len(new)
    repeats = set(shared).difference(firsts.values())
    deque(map(keep.__setitem__, repeats, repeat(0)), 0)
    return keep, at


def _refcount_in_list() -> int:
    """``sys.getrefcount`` of an object that one list holds, read as ``_targets`` reads it."""
    probe = [object()]
    return next(map(sys.getrefcount, probe))


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
