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
import os
import sys
import threading
from types import FrameType, ModuleType
from typing import Any, List, Optional, Tuple

from otel_profiling._threads import is_own_thread
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


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def walk_heap(skip_dirs: Tuple[str, ...] = (_PACKAGE_DIR,)) -> HeapGraph:
    """A ``HeapGraph`` of the live objects, reachable from modules and thread stacks.

    Frames of code under ``skip_dirs`` (this package by default) are cut from
    the stacks: the walk's own locals would hold the structures being built.

    One function without closures (a closure's cells would exist before
    ``gc.get_objects()`` and drag the walk's own structures into the graph);
    ``gc.get_objects()`` leaves its own result list out, and that list is
    freed once grouped. The objects are walked in bulk by ``GraphBuilder``,
    grouped by kind.
    """
    found_objects: List[Any] = gc.get_objects()
    # Taken after gc.get_objects(), so that these lists are not themselves in the graph.
    threads = _frames_of_threads(skip_dirs)
    modules = [(name, m) for name, m in list(sys.modules.items()) if m is not None]
    graph = HeapGraph()
    base = 1 + len(threads) + sum(len(frames) for _, frames in threads)
    builder = GraphBuilder(graph, base)  # root, threads and frames come first
    objs = builder.group(found_objects)
    del found_objects  # the walk's own list: freed, never a node
    _add_virtual_nodes(builder, _virtual_nodes(threads, modules, graph.strings.add, sys.getsizeof))
    del threads, modules
    builder.walk()
    objs.clear()  # it may hold a frame that holds it: free it without waiting for gc
    return graph


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


def _add_virtual_nodes(builder: GraphBuilder, virtual: List[_Virtual]) -> None:
    """The root, thread and frame nodes with their edges (one at a time: a few hundred)."""
    graph = builder.graph
    for kind, name, size, edges in virtual:
        graph.node_type.append(kind)
        graph.node_name.append(graph.strings.add(name))
        graph.node_size.append(size)
        graph.node_edges.append(len(edges))
        for etype, ename, obj in edges:
            graph.edge_type.append(etype)
            graph.edge_name.append(ename)
            if isinstance(obj, _NodeRef):
                graph.edge_to.append(int(obj) * NODE_FIELD_COUNT)
            else:
                graph.edge_to.append(builder.target(obj))


class _NodeRef(int):
    """A virtual node's index, given directly as an edge target."""
