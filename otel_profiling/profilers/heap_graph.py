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
left out. ``walk_roots`` walks from given objects instead.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from types import FrameType
from typing import Any, List, Mapping, Optional, Tuple

from otel_profiling._threads import is_own_thread, thread_frames
from otel_profiling.formats.heapsnapshot import (
    ELEMENT,
    INTERNAL,
    NODE_FIELD_COUNT,
    OBJECT,
    PROPERTY,
    SYNTHETIC,
    HeapGraph,
)
from otel_profiling.profilers.heap_edges import GraphBuilder

Edge = Tuple[int, int, int]  # (edge type, name or index, target node offset)


def _frames_of_threads(skip_dirs: Tuple[str, ...]) -> List[Tuple[str, List[FrameType]]]:
    """``(thread name, frames innermost first)`` for the application's threads."""
    names = {t.ident: t.name for t in threading.enumerate()}
    result = []
    for ident, top in thread_frames().items():
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


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def walk_heap(skip_dirs: Tuple[str, ...] = (_PACKAGE_DIR,)) -> HeapGraph:
    """A ``HeapGraph`` of the live objects, reachable from modules and thread stacks.

    Frames of code under ``skip_dirs`` (this package by default) are cut from
    the stacks: the walk's own locals would hold the structures being built.

    One function without closures (a closure's cells would exist before
    ``gc.get_objects()`` and drag the walk's own structures into the graph);
    ``gc.get_objects()`` leaves its own result list out, and that list is
    freed once placed.
    """
    found_objects: List[Any] = gc.get_objects()
    # Taken after gc.get_objects(), so that these lists are not themselves in the graph.
    threads = _frames_of_threads(skip_dirs)
    modules = [(name, m) for name, m in list(sys.modules.items()) if m is not None]
    graph = HeapGraph()
    builder = GraphBuilder(graph, 1 + len(threads) + sum(len(frames) for _, frames in threads))
    builder.place_tracked(found_objects)
    del found_objects  # the walk's own list: freed, never a node
    _add_roots(builder, threads, modules)
    del threads, modules
    builder.walk()
    builder.objs.clear()  # it may hold a frame that holds it: free it without waiting for gc
    return graph


def walk_roots(roots: Mapping[str, Any]) -> HeapGraph:
    """A ``HeapGraph`` of ``roots`` (``property`` edges from the root) and what they hold.

    Classes and modules are nodes without edges: the snapshot shows what the
    roots hold, not the whole program that defines them.
    """
    graph = HeapGraph()
    builder = GraphBuilder(graph, 1, within_roots=True)
    names = list(map(graph.strings.add, roots))
    targets = builder.targets(list(roots.values()), from_roots=True)
    _add_node(
        graph, SYNTHETIC, "", 0, [(PROPERTY, n, to) for n, to in zip(names, targets, strict=True)]
    )
    builder.walk()
    return graph


def _add_roots(
    builder: GraphBuilder,
    threads: List[Tuple[str, List[FrameType]]],
    modules: List[Tuple[str, Any]],
) -> None:
    """The synthetic root (node 0), then a node per thread followed by one per frame."""
    graph, add_string = builder.graph, builder.graph.strings.add
    root_edges: List[Edge] = []
    stack_nodes: List[Tuple[str, int, List[Edge]]] = []
    node = 1
    for number, (name, frames) in enumerate(threads):
        root_edges.append((ELEMENT, number, node * NODE_FIELD_COUNT))
        frame_nodes = range(node + 1, node + 1 + len(frames))
        thread_edges = [(ELEMENT, i, n * NODE_FIELD_COUNT) for i, n in enumerate(frame_nodes)]
        stack_nodes.append((f"Thread {name}", 0, thread_edges))
        for frame in frames:
            code = frame.f_code
            function = getattr(code, "co_qualname", code.co_name)  # co_qualname: 3.11+
            where = f"{function} ({code.co_filename}:{frame.f_lineno})"
            try:
                local_vars = [(k, v) for k, v in frame.f_locals.items() if isinstance(k, str)]
            except Exception:  # noqa: BLE001 - a frame may refuse; keep the rest
                local_vars = []
            values = builder.targets([code] + [v for _, v in local_vars], from_roots=True)
            frame_edges = [(INTERNAL, add_string("code"), values[0])]
            for (key, _), to in zip(local_vars, values[1:], strict=True):
                frame_edges.append((PROPERTY, add_string(key), to))
            stack_nodes.append((f"Frame {where}", sys.getsizeof(frame), frame_edges))
        node += 1 + len(frames)
    targets = builder.targets([module for _, module in modules], from_roots=True)
    for (name, _), to in zip(modules, targets, strict=True):
        root_edges.append((PROPERTY, add_string(name), to))
    _add_node(graph, SYNTHETIC, "", 0, root_edges)
    for name, size, edges in stack_nodes:
        _add_node(graph, OBJECT, name, size, edges)


def _add_node(graph: HeapGraph, kind: int, name: str, size: int, edges: List[Edge]) -> None:
    graph.node_type.append(kind)
    graph.node_name.append(graph.strings.add(name))
    graph.node_size.append(size)
    graph.node_edges.append(len(edges))
    for edge_type, edge_name, to in edges:
        graph.edge_type.append(edge_type)
        graph.edge_name.append(edge_name)
        graph.edge_to.append(to)
