"""Node fields and edges of a ``HeapGraph``, computed in bulk (see ``heap_graph``).

Objects are walked in runs of one kind (dicts, sequences, strings, other
objects, ...), a segment at a time: a run's sizes, names, referents and edge
names are each computed by one ``map`` or list operation over the whole run,
so the work per object and per edge runs in C rather than in a Python loop.
Referents met for the first time become nodes, grouped into runs by kind in
turn, and are walked after the nodes placed before them: the nodes and their
edges come out in node order, as the file needs.

Every object with a node is in ``objs`` (in node order), which keeps it
alive so that its ``id`` stays its own. ``index`` maps ``id`` to node offset
for the objects the walk may meet more than once. An object that one
reference holds is met once, by its holder, and needs no entry:
``sys.getrefcount`` tells them apart (see ``_counts``). This keeps the index
to the shared objects, about a fifth of a typical heap, which halves the
snapshot's peak memory (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import gc
import sys
import sysconfig
from array import array
from collections import defaultdict, deque
from itertools import chain, compress, islice, repeat
from operator import is_, itemgetter, not_
from types import CodeType, FunctionType, ModuleType
from typing import Any, Callable, DefaultDict, Deque, Dict, List, Tuple

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

# How an object is walked, from its type (``walk_kind``). STR and LEAF have no
# edges; FUNC is walked as GENERIC and named by its qualified name.
GENERIC, DICT, SUBDICT, SEQ, MODULE, FUNC, STR, LEAF = range(8)
_LEAF_TYPES = (int, float, complex, bool, bytes, type(None), type(Ellipsis), range)
_NUMBER_TYPES = (int, float, complex, bool)
_STR_ONLY = {id(str)}
_MAX_ELEMENT = 2**31 - 1  # dict keys up to this are element edges (the file's ints are 32-bit)
_NAME_LENGTH = 80  # strings are named by their first 80 characters
_SEGMENT = 8192  # objects walked at a time: bounds the temporaries of a run
# Segments between handing freed memory back: the growing arrays and the
# segments' temporaries leave freed blocks behind that would otherwise add to
# the walk's peak; each time costs about half a millisecond.
_TRIM_EVERY = 16
# From 3.13 an instance's __dict__ may share the instance's own store of values.
_EMBEDDED_VALUES = sys.version_info >= (3, 13)
# A free-threaded build defers some reference counts: it indexes every object.
_COUNTS_EXACT = not sysconfig.get_config_var("Py_GIL_DISABLED")


def _counts(objs: List[Any]) -> List[int]:
    """``sys.getrefcount`` of each of ``objs``: its holders, plus ``_ONLY_LISTED``."""
    return list(map(sys.getrefcount, objs))


# What ``_counts`` reads for an object that only the list it is given holds.
_ONLY_LISTED = _counts([object()])[0]


def _is_one_of(t: type, types: Tuple[type, ...]) -> bool:
    """``t in types`` by identity: a metaclass's ``__eq__`` never runs."""
    return any(t is candidate for candidate in types)


def walk_kind(t: type) -> int:
    if issubclass(t, str):
        return STR
    if issubclass(t, dict):
        return DICT if t is dict else SUBDICT
    if t is list or t is tuple:
        return SEQ
    if t is FunctionType:
        return FUNC
    if issubclass(t, ModuleType):
        return MODULE
    if _is_one_of(t, _LEAF_TYPES):
        return LEAF
    return GENERIC


def _walk_kind_within_roots(t: type) -> int:
    """As ``walk_kind``, but classes and modules are not walked into (see ``walk_roots``)."""
    return LEAF if issubclass(t, (type, ModuleType)) else walk_kind(t)


def node_type(t: type) -> int:
    if issubclass(t, str):
        return STRING
    if t is FunctionType:
        return CLOSURE
    if _is_one_of(t, _NUMBER_TYPES):
        return NUMBER
    if t is CodeType:
        return CODE
    return OBJECT


# A type's names read through ``type``'s own descriptors: a metaclass's
# ``__getattribute__`` or properties never run.
_type_name = vars(type)["__name__"].__get__
_type_qualname = vars(type)["__qualname__"].__get__
_type_module = vars(type)["__module__"].__get__


def _class_name(t: type) -> str:
    return str(_type_name(t))


def type_label(t: type) -> str:
    """A node's name for objects of type ``t``: ``module.Class``, builtins by bare name."""
    qualname = str(_type_qualname(t))
    try:
        module = _type_module(t)
    except AttributeError:  # a class whose namespace lost its __module__
        return qualname
    if type(module) is not str or module in ("builtins", "__builtin__"):
        return qualname
    return f"{module}.{qualname}"


class _ByType:
    """A value per type, computed by ``compute`` the first time the type is met.

    Types are told apart by identity (``id``), never by ``==`` or ``hash``: a
    metaclass may define those in Python, make them raise, or leave its classes
    unhashable. Each type looked up is the type of an object the walk holds
    until it ends, so its ``id`` stays its own.
    """

    def __init__(self, compute: Callable[[type], int]) -> None:
        self._compute = compute
        self._values: Dict[int, int] = {}

    def lookup(self, types: List[type]) -> List[int]:
        """The value for each of ``types``; those met for the first time are computed."""
        values = self._values
        try:
            return list(map(values.__getitem__, map(id, types)))
        except KeyError:  # a type met for the first time
            for key, t in {id(t): t for t in types}.items():
                if key not in values:
                    values[key] = self._compute(t)
            return list(map(values.__getitem__, map(id, types)))

    def array(self, types: List[type], typecode: str) -> array[int]:
        """``lookup`` as an array; for a run of one type, looked up once."""
        if types and all(map(is_, types, repeat(types[0]))):
            return _repeated(typecode, self.lookup(types[:1])[0], len(types))
        return array(typecode, self.lookup(types))


class GraphBuilder:
    """Adds objects to ``graph`` as nodes ``base`` onwards, then walks them for their edges.

    ``place_tracked`` places the gc-tracked objects (``gc.get_objects()``), ``targets``
    gives the node offsets of objects (placing those met for the first time)
    and ``walk`` writes, in node order, each placed node's fields and edges,
    placing their new referents as it goes. ``within_roots``: classes and
    modules are nodes without edges.
    """

    def __init__(self, graph: HeapGraph, base: int, *, within_roots: bool = False) -> None:
        self.graph, self.base = graph, base
        strings = graph.strings
        self.kind = _ByType(_walk_kind_within_roots if within_roots else walk_kind)
        self.node_type = _ByType(node_type)
        self.type_name = _ByType(lambda t: strings.add(type_label(t)))
        self.edge_label = _ByType(lambda t: strings.add(_class_name(t)))
        self.dict_name = strings.add("__dict__")
        self.key_name = strings.add("key")
        self.objs: List[Any] = []  # every object with a node, in node order
        self.index: Dict[int, int] = {}  # id(obj) -> node offset, for shared objects
        self.pending: Deque[Tuple[int, List[Any]]] = deque()  # runs placed, not walked yet
        self.singles: List[Any] = []  # gc-tracked objects held once, not met yet

    def place_tracked(self, found: List[Any]) -> None:
        """Place the gc-tracked objects ``found``, except those one reference holds.

        Those wait in ``singles`` until the walk meets them, through their one
        holder; ``walk`` places at the end the ones it did not meet (held by
        C code that gc does not see).
        """
        if _COUNTS_EXACT:
            held_once = [count == _ONLY_LISTED + 1 for count in _counts(found)]
            self.singles = list(compress(found, held_once))
            found = list(compress(found, map(not_, held_once)))
        self.index.update(self.place(found))

    def place(self, objs: List[Any]) -> Dict[int, int]:
        """Add ``objs`` (distinct, new) as nodes, grouped into runs by kind; id → offset."""
        kinds = self.kind.lookup(list(map(type, objs)))
        groups: DefaultDict[int, List[Any]] = defaultdict(list)
        if kinds and kinds.count(kinds[0]) == len(kinds):  # one kind: one group
            groups[kinds[0]] = list(objs)
        else:
            for obj, kind in zip(objs, kinds, strict=True):
                groups[kind].append(obj)
        placed: Dict[int, int] = {}
        step = NODE_FIELD_COUNT
        for kind, group in groups.items():
            offset = (self.base + len(self.objs)) * step
            placed.update(
                zip(map(id, group), range(offset, offset + len(group) * step, step), strict=True)
            )
            self.objs.extend(group)
            # the last pending run is the last placed: the group can join it
            if self.pending and self.pending[-1][0] == kind:
                self.pending[-1][1].extend(group)
            else:
                self.pending.append((kind, group))
        return placed

    def targets(self, refs: List[Any], *, from_roots: bool = False) -> List[int]:
        """The node offset of each of ``refs``; those met for the first time are placed.

        ``from_roots``: ``refs`` are the targets of the root, thread or frame
        nodes, which hold no references of their own: the new ones are indexed.
        """
        keys = list(map(id, refs))
        found: List[Any] = list(map(self.index.get, keys))
        if None not in found:
            return found
        new = list(
            {
                key: ref for key, ref, at in zip(keys, refs, found, strict=True) if at is None
            }.values()
        )
        shared = list(map(id, new if from_roots else self._shared(new)))
        placed = self.place(new)
        del new
        self.index.update(zip(shared, map(placed.__getitem__, shared), strict=True))
        # the offsets of the new ones from ``placed``, of the others from the index
        return list(map(placed.get, keys, found))

    def _shared(self, new: List[Any]) -> List[Any]:
        """Those of ``new``, a run's referents met for the first time, that may be met again.

        Each is held by ``new``, by ``refs`` (once per reference to it there),
        by ``singles`` if it waits there (gc-tracked in a whole-heap walk) and
        by its holders. Held by one holder and met once, it is met no more.
        Being gc-tracked stands for waiting in ``singles``; a tracked object
        that another thread creates during the walk is indexed only from
        three holders (with two, it may show as two nodes).
        """
        if not _COUNTS_EXACT:
            return new
        counts = _counts(new)
        waiting = map(gc.is_tracked, new) if self.singles else repeat(False)
        once = _ONLY_LISTED + 1 + 1  # ``new`` (in _ONLY_LISTED), one entry of ``refs``, one holder
        return [obj for obj, n, w in zip(new, counts, waiting, strict=False) if n > once + w]

    def walk(self) -> None:
        """Fields and edges of every placed node, including those placed on the way."""
        segments = 0
        while self.pending:
            kind, run = self.pending.popleft()
            for start in range(0, len(run), _SEGMENT):
                self._walk_run(kind, run[start : start + _SEGMENT])
                segments += 1
                if segments % _TRIM_EVERY == 0:
                    return_free_memory()
            del run
            if not self.pending:
                self._place_missed_singles()
        self.index = {}

    def _place_missed_singles(self) -> None:
        """Place the ``singles`` the walk did not meet: their one holder is invisible to gc.

        One the walk met is also held by ``objs``; one it did not, only by
        ``singles`` and its holder. They are indexed: one may be the holder of
        another (a class's dict of subclasses, which gc does not see, holds
        weak references that only it holds).
        """
        singles, self.singles = self.singles, []
        held_once = [count == _ONLY_LISTED + 1 for count in _counts(singles)]
        missed = list(compress(singles, held_once))
        del singles
        self.index.update(self.place(missed))

    def _walk_run(self, kind: int, run: List[Any]) -> None:
        """Node fields and edges of a run of objects of one kind, in order."""
        graph = self.graph
        self._node_fields(kind, run)
        if kind in (STR, LEAF):
            graph.node_edges.extend(_repeated("I", 0, len(run)))
            return
        if kind in (DICT, SUBDICT):
            counts, edge_types, edge_names, refs = self._dict_edges(kind, run)
        elif kind == SEQ:
            # copied first: counts and items then agree even if another thread
            # changes a list between the two reads
            items = list(map(list, run))
            counts = list(map(len, items))
            refs = list(chain.from_iterable(items))
            del items
            edge_types = _repeated("b", ELEMENT, len(refs))
            edge_names = list(chain.from_iterable(map(range, counts)))
        else:
            referents = list(map(_referents if kind == MODULE else gc.get_referents, run))
            counts = list(map(len, referents))
            refs = list(chain.from_iterable(referents))
            del referents
            edge_types = _repeated("b", INTERNAL, len(refs))
            edge_names = self._internal_names(kind, refs)
        graph.node_edges.fromlist(counts)
        graph.edge_type.extend(edge_types)
        graph.edge_name.fromlist(edge_names)
        graph.edge_to.fromlist(self.targets(refs))

    def _node_fields(self, kind: int, run: List[Any]) -> None:
        """Type, name and self size of each object of a run."""
        graph = self.graph
        types = list(map(type, run))
        graph.node_type.extend(self.node_type.array(types, "b"))
        if kind == STR:  # str's own slicing, never a subclass's
            texts = map(str.__getitem__, run, repeat(slice(0, _NAME_LENGTH)))
            graph.node_name.fromlist(list(graph.strings.append_many(texts)))
        elif kind == FUNC:
            add = graph.strings.add
            graph.node_name.fromlist([add(function.__qualname__ or "function") for function in run])
        else:
            graph.node_name.extend(self.type_name.array(types, "I"))
        graph.node_size.fromlist(_sizes(run))

    def _internal_names(self, kind: int, refs: List[Any]) -> List[int]:
        """``internal`` edges are named after the referent's type (a module's dict: __dict__)."""
        if kind == MODULE:
            return [self.dict_name if type(ref) is dict else 0 for ref in refs]
        return self.edge_label.lookup(list(map(type, refs)))

    def _dict_edges(
        self, kind: int, dicts: List[Any]
    ) -> Tuple[List[int], array[int], List[int], List[Any]]:
        """Edge counts, types, names and targets of a run of dicts.

        Each dict is read in one C call that runs no Python code, so that
        another thread cannot change it between reading its keys and its
        values. A plain dict is copied; a subclass's items are listed by
        ``dict.items``, which bypasses its overrides (such as the ``__iter__``
        that ``dict.copy`` would call) and, unlike a copy into a new dict,
        never hashes or compares a key.
        """
        if kind == DICT:
            copies = list(map(_copy_dict, dicts))
            counts = list(map(len, copies))
            keys = list(chain.from_iterable(copies))
            values = list(chain.from_iterable(map(dict.values, copies)))
        else:
            items = list(map(list, map(dict.items, dicts)))
            counts = list(map(len, items))
            pairs = list(chain.from_iterable(items))
            keys = list(map(itemgetter(0), pairs))
            values = list(map(itemgetter(1), pairs))
        if set(map(id, map(type, keys))) <= _STR_ONLY:  # by identity, as _ByType does
            names = self.graph.strings.add_many(keys)
            return counts, _repeated("b", PROPERTY, len(values)), names, values
        return self._mixed_key_edges(counts, keys, values)

    def _mixed_key_edges(
        self, counts: List[int], keys: List[Any], values: List[Any]
    ) -> Tuple[List[int], array[int], List[int], List[Any]]:
        """As ``_dict_edges`` when some keys are not strings: one item at a time."""
        edge_counts: List[int] = []
        edge_types = array("b")
        edge_names: List[int] = []
        refs: List[Any] = []
        add = self.graph.strings.add
        items = zip(keys, values, strict=True)
        for count in counts:
            before = len(refs)
            for key, value in islice(items, count):
                if type(key) is str:
                    edge_types.append(PROPERTY)
                    edge_names.append(add(key))
                elif type(key) is int and 0 <= key <= _MAX_ELEMENT:
                    edge_types.append(ELEMENT)
                    edge_names.append(key)
                else:  # the key object, then the value named after the key's type
                    edge_types.extend((INTERNAL, PROPERTY))
                    edge_names += (self.key_name, add(f"[{_class_name(type(key))}]"))
                    refs.append(key)
                refs.append(value)
            edge_counts.append(len(refs) - before)
        return edge_counts, edge_types, edge_names, refs


def _copy_shared_values_dict(d: Dict[Any, Any]) -> Dict[Any, Any]:
    """A copy of ``d``, or ``{}`` for a ``__dict__`` whose values its instance reports.

    From 3.13 gc reports nothing for a ``__dict__`` that shares its instance's
    store of values: the instance reports them, once.
    """
    if not gc.get_referents(d):
        return {}
    return d.copy()


# Before 3.13 no dict shares its values with an instance: a plain copy.
_copy_dict = _copy_shared_values_dict if _EMBEDDED_VALUES else dict.copy


def _repeated(typecode: str, value: int, count: int) -> array[int]:
    """An array of ``count`` times ``value``, filled by copying rather than item by item."""
    return array(typecode, [value]) * count


def _sizes(objs: List[Any]) -> List[int]:
    """``sys.getsizeof`` of each object; one whose ``__sizeof__`` fails counts as 0."""
    try:
        return list(map(sys.getsizeof, objs))
    except Exception:  # noqa: BLE001 - a broken __sizeof__: one object at a time
        sizes = []
        for obj in objs:
            try:
                sizes.append(sys.getsizeof(obj))
            except Exception:  # noqa: BLE001
                sizes.append(0)
        return sizes


# A module's ``__dict__`` read through ``ModuleType``'s own descriptor: a
# subclass's ``__getattribute__`` (importlib's ``LazyLoader`` loads the module
# there) never runs.
_module_namespace = vars(ModuleType)["__dict__"].__get__


def _referents(module: Any) -> List[Any]:
    """A module's referents: its ``__dict__`` only.

    ``gc.get_referents(module)`` also runs the module's C traverse function,
    and ``_asyncio``'s (CPython 3.12 to 3.12.5 and 3.13.0) visits the freed
    objects of its free list: holding one frees it twice, and the next full
    collection crashes or loops (CPython gh-122695). What a module's C state
    holds is still in the snapshot, as objects only C code holds.
    """
    namespace = _module_namespace(module)
    return [] if namespace is None else [namespace]
