"""Walking the gc object graph into a ``HeapGraph``.

Nodes are the gc-tracked objects (``gc.get_objects()``) plus every object
they reference (strings, numbers and other untracked objects appear only as
referents). Names come from the object's type (``module.Class``; builtins
by bare name); strings are named by their first characters, functions by
their qualified name. ``sys.getsizeof`` is each node's self size. Edges:

* a dict's values are ``property`` edges named by their ``str`` keys, or
  ``element`` edges for small non-negative ``int`` keys; other keys get an
  ``internal`` ``key`` edge and a ``property`` edge named ``[type]``;
* list and tuple items are ``element`` edges by index (read from the sequence:
  gc's traversal visits them backwards);
* everything else ``gc.get_referents`` returns is an ``internal`` edge
  named after the referent's type (``__dict__`` for a module's namespace).

Instance attributes stored inline (CPython 3.11+) have no accessible names
without creating each instance's ``__dict__``, which would change the heap
being measured; they are ``internal`` edges, and attributes of an object whose
``__dict__`` exists are ``property`` edges of that dict.

The roots hang off the synthetic root: every module in ``sys.modules``
(``property`` edges named by module name) and every thread's stack (an
``element`` edge to a ``Thread <name>`` node, whose frames hold their local
variables as ``property`` edges). The library's own threads and frames are
left out.
"""

from __future__ import annotations

import gc
import sys
import threading
from array import array
from itertools import chain, compress
from operator import itemgetter
from types import FrameType, FunctionType, ModuleType
from typing import Any, Dict, List, Optional, Tuple

from otel_profiling._threads import is_own_thread
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
    SYNTHETIC,
    HeapGraph,
)

# How to walk an object; kinds from _LEAF up have no edges of their own to
# derive (functions keep their referents) and some are named by content.
_GENERIC, _DICT, _SEQ, _MODULE, _LEAF, _STR, _FUNC = range(7)
_NAME_SLICE = slice(0, 80)  # strings are named by their first 80 characters
_MAX_ELEMENT = 2**31 - 1
_STR_ONLY = {str}
_LEAF_TYPES = (int, float, complex, bool, bytes, type(None), type(Ellipsis), range)


def _frames_of_threads(skip_dirs: Tuple[str, ...]) -> List[Tuple[str, List[FrameType]]]:
    """``(thread name, frames innermost first)`` for the application's threads."""
    names = {t.ident: t.name for t in threading.enumerate()}
    result = []
    for ident, top in sys._current_frames().items():
        if is_own_thread(ident):
            continue
        frames: List[FrameType] = []
        frame: Optional[FrameType] = top
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        # Cut the library's own frames (a snapshot taken inside ``with agent.profile()``).
        for index in range(len(frames) - 1, -1, -1):
            if frames[index].f_code.co_filename.startswith(skip_dirs):
                frames = frames[index + 1 :]
                break
        result.append((names.get(ident, f"thread {ident}"), frames))
    return result


def _type_info(t: type, strings: Any) -> Tuple[int, int, int]:
    """(node type, name index, how to walk) for objects of type ``t``."""
    if t.__module__ in ("builtins", "__builtin__"):
        label = t.__qualname__
    else:
        label = f"{t.__module__}.{t.__qualname__}"
    name = strings.add(label)
    if issubclass(t, str):
        return STRING, name, _STR
    if issubclass(t, dict):
        return OBJECT, name, _DICT
    if t is list or t is tuple:
        return OBJECT, name, _SEQ
    if t is FunctionType:
        return CLOSURE, name, _FUNC
    if issubclass(t, ModuleType):
        return OBJECT, name, _MODULE
    if t in _LEAF_TYPES:
        return (NUMBER if t in (int, float, complex, bool) else OBJECT), name, _LEAF
    if t.__name__ == "code":
        return CODE, name, _GENERIC
    return OBJECT, name, _GENERIC


def walk_heap(skip_dirs: Tuple[str, ...] = ()) -> HeapGraph:
    """A ``HeapGraph`` of the live objects, reachable from modules and thread stacks.

    One function without closures (a closure's cells would exist before
    ``gc.get_objects()`` and drag the walk's own structures into the graph);
    ``gc.get_objects()``'s own result list is removed. Edges are added in bulk
    (``map`` over ``id`` and ``dict.get``) and node fields in one pass at the
    end, so most of the per-object work runs in C.
    """
    found_objects: List[Any] = gc.get_objects()
    # Taken after gc.get_objects(), so that these lists are not themselves in the graph.
    threads = _frames_of_threads(skip_dirs)
    modules = [(name, m) for name, m in list(sys.modules.items()) if m is not None]
    graph = HeapGraph()
    strings = graph.strings
    types: Dict[type, Tuple[int, int, int]] = {}
    # Objects grouped by how they are walked (lists and tuples, other objects,
    # functions and dicts: in bulk; then modules and the rest: one at a time).
    objs, bulk = _grouped(found_objects, types, strings)
    del found_objects  # gc.get_objects()'s own result, which lists itself: not a node
    frame_count = sum(len(frames) for _, frames in threads)
    base = 1 + len(threads) + frame_count  # root, threads and frames come first
    step = NODE_FIELD_COUNT
    # id -> offset of the node in the ``nodes`` array (index × field count)
    index: Dict[int, int] = dict(
        zip(map(id, objs), range(base * step, (base + len(objs)) * step, step))
    )
    add_string = strings.add
    string_get = strings.index.get
    edge_type, edge_name, edge_to = (
        graph.edge_type.append,
        graph.edge_name.append,
        graph.edge_to.append,
    )
    edge_types, edge_names, edge_tos = (
        graph.edge_type.frombytes,
        graph.edge_name.extend,
        graph.edge_to.extend,
    )
    node_edges = graph.node_edges.append
    index_get = index.get
    objs_append = objs.append

    for kind, name, size, edges in _virtual_nodes(threads, modules, add_string, sys.getsizeof):
        graph.node_type.append(kind)
        graph.node_name.append(add_string(name))
        graph.node_size.append(size)
        node_edges(len(edges))
        for etype, ename, obj in edges:
            edge_type(etype)
            edge_name(ename)
            if isinstance(obj, _NodeRef):
                edge_to(int(obj) * step)
                continue
            found = index_get(id(obj))
            if found is None:
                found = index[id(obj)] = (base + len(objs)) * step
                objs_append(obj)
            edge_to(found)
    del threads, modules, edges, obj

    types_get = types.get
    labels: Dict[type, int] = {}
    labels_get = labels.get
    dict_name = add_string("__dict__")
    key_name = add_string("key")
    get_referents = gc.get_referents
    dict_items = dict.items
    named = array("i")  # positions of strings and functions: named by content
    element_bytes = bytes([ELEMENT]) * 4096
    property_bytes = bytes([PROPERTY]) * 4096
    internal_bytes = bytes([INTERNAL]) * 4096

    obj = refs = items = chunk = ref_lists = None  # (all released before returning)
    position = 0
    for kind, count in bulk:
        for start in range(position, position + count, _BULK):
            chunk = objs[start : min(start + _BULK, position + count)]
            if kind == _DICT:
                # list(dict.items(d)) copies a dict atomically (no Python code runs)
                item_lists = list(map(list, map(dict_items, chunk)))
                counts = list(map(len, item_lists))
                pairs = list(chain.from_iterable(item_lists))
                keys, refs = (list(side) for side in zip(*pairs)) if pairs else ([], [])
                del item_lists, pairs
                names = list(map(string_get, keys)) if set(map(type, keys)) <= _STR_ONLY else None
                if names is None or None in names:  # new names or other keys: one by one
                    counts, refs = _dict_chunk(graph, strings, chunk, key_name)
                else:
                    edge_types(bytes([PROPERTY]) * len(refs))
                    edge_names(names)
                graph.node_edges.extend(counts)
            else:
                # list(): the items in order (gc's traversal visits a sequence backwards)
                ref_lists = list(map(list if kind == _SEQ else get_referents, chunk))
                counts = list(map(len, ref_lists))
                graph.node_edges.extend(counts)
                refs = list(chain.from_iterable(ref_lists))
            if kind == _SEQ:
                edge_types(bytes([ELEMENT]) * len(refs))
                edge_names(chain.from_iterable(map(range, counts)))
            elif kind != _DICT:
                edge_types(bytes([INTERNAL]) * len(refs))
                found_labels = list(map(labels_get, map(type, refs)))
                if None in found_labels:
                    found_labels = _add_labels(refs, labels, add_string)
                edge_names(found_labels)
                if kind == _FUNC:
                    named.extend(range(start, start + len(chunk)))
            targets = list(map(index_get, map(id, refs)))
            if None in targets:
                for slot, found in enumerate(targets):
                    if found is None:
                        r = refs[slot]
                        found = index_get(id(r))
                        if found is None:
                            found = index[id(r)] = (base + len(objs)) * step
                            objs_append(r)
                        targets[slot] = found
            edge_tos(targets)
        position += count
    chunk = ref_lists = refs = None

    while position < len(objs):
        obj = objs[position]
        position += 1
        t = type(obj)
        info = types_get(t)
        if info is None:
            info = types[t] = _type_info(t, strings)
        kind = info[2]
        if kind >= _LEAF:
            if kind != _LEAF:
                named.append(position - 1)
            if kind != _FUNC:
                node_edges(0)
                continue
        if kind == _DICT:
            items = list(dict_items(obj))
            if not items:
                node_edges(0)
                continue
            keys, refs = zip(*items)
            names = list(map(string_get, keys)) if set(map(type, keys)) == _STR_ONLY else [None]
            if None in names:  # new names or other keys: one key at a time
                _dict_edges(graph, strings, keys, key_name)
                refs = _dict_targets(keys, refs)
            else:
                m = len(names)
                edge_types(property_bytes[:m] if m <= 4096 else bytes([PROPERTY]) * m)
                edge_names(names)
        elif kind == _SEQ:  # the items in order (gc's traversal visits them backwards)
            refs = obj if t is tuple else list(obj)
            m = len(refs)
            edge_types(element_bytes[:m] if m <= 4096 else bytes([ELEMENT]) * m)
            edge_names(range(m))
        else:
            refs = get_referents(obj)
            m = len(refs)
            edge_types(internal_bytes[:m] if m <= 4096 else bytes([INTERNAL]) * m)
            if kind == _MODULE:
                edge_names(_module_edge_names(refs, dict_name))
            else:
                found_labels = list(map(labels_get, map(type, refs)))
                if None in found_labels:
                    found_labels = _add_labels(refs, labels, add_string)
                edge_names(found_labels)
        targets = list(map(index_get, map(id, refs)))
        if None in targets:
            for slot, found in enumerate(targets):
                if found is None:
                    r = refs[slot]
                    found = index_get(id(r))
                    if found is None:
                        found = index[id(r)] = (base + len(objs)) * step
                        objs_append(r)
                    targets[slot] = found
        edge_tos(targets)
        node_edges(len(targets))
    del index, index_get
    obj = refs = items = None
    _node_fields(graph, objs, types, named, add_string)
    objs.clear()  # it may hold a frame that holds it: free it without waiting for gc
    return graph


_BULK = 2048  # objects per bulk step
_BULK_KINDS = (_SEQ, _GENERIC, _FUNC, _DICT)


def _grouped(
    found: List[Any], types: Dict[type, Tuple[int, int, int]], strings: Any
) -> Tuple[List[Any], List[Tuple[int, int]]]:
    """``found`` reordered: the bulk kinds first, each group contiguous, then the rest.

    Returns the list and ``[(kind, count)]`` of the bulk groups at its start.
    ``found`` itself (gc.get_objects() lists its own result) is left out.
    """
    for t in set(map(type, found)):
        if t not in types:
            types[t] = _type_info(t, strings)
    kinds = list(map(itemgetter(2), map(types.__getitem__, map(type, found))))
    ordered: List[Any] = []
    bulk: List[Tuple[int, int]] = []
    for kind in _BULK_KINDS:
        group = list(compress(found, map(kind.__eq__, kinds)))
        if kind == _SEQ:
            group = [obj for obj in group if obj is not found]
        bulk.append((kind, len(group)))
        ordered.extend(group)
    rest = set(range(7)) - set(_BULK_KINDS)
    ordered.extend(compress(found, map(rest.__contains__, kinds)))
    return ordered, bulk


def _node_fields(
    graph: HeapGraph,
    objs: List[Any],
    types: Dict[type, Tuple[int, int, int]],
    named: Any,
    add_string: Any,
) -> None:
    """Type, name and self size of every object node, in bulk after the walk."""
    base = len(graph.node_type)
    infos = list(map(types.__getitem__, map(type, objs)))
    graph.node_type.extend(map(itemgetter(0), infos))
    graph.node_name.extend(map(itemgetter(1), infos))
    del infos
    try:
        graph.node_size.extend(map(sys.getsizeof, objs))
    except Exception:  # noqa: BLE001 - a broken __sizeof__: one object at a time
        del graph.node_size[base:]
        for obj in objs:
            try:
                graph.node_size.append(sys.getsizeof(obj))
            except Exception:  # noqa: BLE001
                graph.node_size.append(0)
    node_name = graph.node_name
    for position in named:
        obj = objs[position]
        if isinstance(obj, str):  # str's own slicing: a subclass's __getitem__ never runs
            node_name[base + position] = add_string(str.__getitem__(obj, _NAME_SLICE))
        else:
            node_name[base + position] = add_string(getattr(obj, "__qualname__", "") or "function")


def _add_labels(refs: List[Any], labels: Dict[type, int], add_string: Any) -> List[int]:
    """Edge names for referents of types not seen yet (their type's name)."""
    for r in refs:
        rt = type(r)
        if rt not in labels:
            labels[rt] = add_string(rt.__name__)
    return [labels[type(r)] for r in refs]


_Virtual = Tuple[int, str, int, List[Tuple[int, int, Any]]]


def _virtual_nodes(
    threads: List[Tuple[str, List[FrameType]]],
    modules: List[Tuple[str, ModuleType]],
    add_string: Any,
    getsizeof: Any,
) -> List[_Virtual]:
    """The synthetic root, then one node per thread and one per frame, with their edges."""
    virtual: List[_Virtual] = []
    root_edges: List[Tuple[int, int, Any]] = []
    position = 1
    for number, (name, frames) in enumerate(threads):
        root_edges.append((ELEMENT, number, _NodeRef(position)))
        refs = [(ELEMENT, depth, _NodeRef(position + 1 + depth)) for depth in range(len(frames))]
        virtual.append((OBJECT, f"Thread {name}", 0, refs))
        for frame in frames:
            code = frame.f_code
            function = getattr(code, "co_qualname", code.co_name)
            where = f"{function} ({code.co_filename}:{frame.f_lineno})"
            frame_edges: List[Tuple[int, int, Any]] = [(INTERNAL, add_string("code"), code)]
            try:
                local_vars = list(frame.f_locals.items())
            except Exception:  # noqa: BLE001 - a frame may refuse; keep the rest
                local_vars = []
            for key, value in local_vars:
                if isinstance(key, str):
                    frame_edges.append((PROPERTY, add_string(key), value))
            virtual.append((OBJECT, f"Frame {where}", getsizeof(frame), frame_edges))
        position += 1 + len(frames)
    for name, module in modules:
        root_edges.append((PROPERTY, add_string(name), module))
    virtual.insert(0, (SYNTHETIC, "", 0, root_edges))
    return virtual


def _module_edge_names(refs: List[Any], dict_name: int) -> List[int]:
    return [dict_name if type(r) is dict else 0 for r in refs]


def _dict_edges(graph: HeapGraph, strings: Any, keys: Tuple[Any, ...], key_name: int) -> None:
    """Edge types and names of a dict with some non-``str`` or new keys (the slow path)."""
    types, labels = graph.edge_type.append, graph.edge_name.append
    for key in keys:
        kt = type(key)
        if kt is str:
            types(PROPERTY)
            labels(strings.add(key))
        elif kt is int and 0 <= key <= _MAX_ELEMENT:
            types(ELEMENT)
            labels(key)
        else:
            types(INTERNAL)
            labels(key_name)
            types(PROPERTY)
            labels(strings.add(f"[{kt.__name__}]"))


def _dict_chunk(
    graph: HeapGraph, strings: Any, dicts: List[Any], key_name: int
) -> Tuple[List[int], List[Any]]:
    """Edges of dicts with new key names or non-``str`` keys, one dict at a time.

    Writes the edge types and names; returns each dict's edge count and the
    edge targets in order, for the caller to map to nodes.
    """
    counts: List[int] = []
    targets: List[Any] = []
    for obj in dicts:
        items = list(dict.items(obj))
        if not items:
            counts.append(0)
            continue
        keys, values = zip(*items)
        _dict_edges(graph, strings, keys, key_name)
        refs = _dict_targets(keys, values)
        counts.append(len(refs))
        targets.extend(refs)
    return counts, targets


def _dict_targets(keys: Tuple[Any, ...], values: Tuple[Any, ...]) -> List[Any]:
    """Edge targets matching ``_dict_edges``: a key object precedes its value when not named."""
    targets: List[Any] = []
    for key, value in zip(keys, values):
        kt = type(key)
        if not (kt is str or (kt is int and 0 <= key <= _MAX_ELEMENT)):
            targets.append(key)
        targets.append(value)
    return targets


class _NodeRef(int):
    """A virtual node's index, given directly as an edge target."""
