"""Deriving a call tree from yappi's call graph.

yappi records, per thread, one entry per function with its total and self
time and, per callee, the time spent in that callee *when called from this
function*. It records no stacks. The tree is rebuilt top-down:

* each thread becomes a child of the root, named after the thread;
* the thread's entry points are the functions no other function called;
* yappi never sees functions that were already running when it started
  (a request loop, ``main()``): their callees show up as entry points. The
  profiler records every thread's stack at start, and an entry point is
  placed under that stack — under the frames above it when it is on that
  stack itself, under the whole stack otherwise — so a profile triggered in
  a long-running loop still shows the loop;
* a node reached with total time ``T`` for function ``f`` gives each callee
  ``c`` the time ``edge(f→c).ttot × T / f.ttot`` — the callee's share of ``f``
  is assumed to be the same whichever path reached ``f`` (exact when ``f``
  has a single caller, the standard approximation otherwise);
* the node's self time is what its children do not account for;
* a coroutine outlives the calls that resume it (yappi's wall clock counts it
  from first call to return, suspensions included, and a resume is not a new
  call), so its time under a caller can exceed that caller's total; such a
  callee keeps its full time, and does not reduce the caller's self time;
* a function running before profiling began that yappi never saw start (a
  coroutine resumed after ``await``) has no time of its own in yappi: it is
  given its callees' time, and what its callers do not account for hangs
  from the start-time stack like an entry point;
* a callee already on the path (recursion) is not expanded again: its time
  stays in the outer call, where yappi also counts it;
* each node with self time counts one sample (``self_count = 1``), the
  synthetic sample the ``.cpuprofile`` writes for it; pprof's ``samples/count``
  is this count;
* expansion stops at ``max_depth`` or when ``max_nodes`` are reached, and
  nodes below ``min_seconds`` are folded into their parent's self time, so the
  tree stays bounded however the graph fans out.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from otel_profiling.formats.calltree import CallNode, Frame, new_root
from otel_profiling.profilers.yappi_stats import FuncStat

# A callee whose time under a caller exceeds the caller's own total cannot have
# run inside it: it is a coroutine resumed by many short calls (yappi's wall
# clock counts a coroutine from its first call to its return, suspensions
# included). Small excesses are clock noise.
_OUTLIVE_RATIO = 1.05
_OUTLIVE_SLACK = 1e-4


def _frame(stat: FuncStat) -> Frame:
    return Frame(stat.name, stat.module, stat.lineno)


def thread_tree(
    parent: CallNode,
    thread_frame: Frame,
    stats: Iterable[FuncStat],
    *,
    max_depth: int = 256,
    max_nodes: int = 200_000,
    min_seconds: float = 1e-6,
    budget: Optional[List[int]] = None,
    start_stack: Sequence[Frame] = (),
) -> None:
    """Add one thread's function stats under ``parent`` as a subtree.

    ``start_stack`` is the thread's stack (outermost first) when profiling began.
    """
    # One record per function: index -> (frame, total time, [(callee index, time under it)])
    stats = list(stats)
    present = {stat.function_id for stat in stats}
    funcs: Dict[int, Tuple[Frame, float, List[Tuple[int, float]]]] = {}
    called: Set[int] = set()
    incoming: Dict[int, float] = {}
    unseen: Set[int] = set()
    for stat in stats:
        edges = [
            (child.callee_id, float(child.ttot))
            for child in stat.children
            if child.callee_id in present
        ]
        ttot = float(stat.ttot)
        if ttot < min_seconds and edges:
            # Running before profiling began and never seen to start (e.g. a coroutine
            # resumed after ``await``): yappi gives it no time; it has at least its callees'.
            ttot = sum(time for index, time in edges if index != stat.function_id)
            unseen.add(stat.function_id)
        funcs[stat.function_id] = (_frame(stat), ttot, edges)
        for index, time in edges:
            if index != stat.function_id:
                called.add(index)
                incoming[index] = incoming.get(index, 0.0) + time
    if not funcs:
        return
    entries = [(index, funcs[index][1]) for index in funcs if index not in called]
    # An unseen function whose callers account for little of its time hangs from the
    # start-time stack like an entry point, with the time no caller gave it.
    for index in unseen & called:
        owed = funcs[index][1] - incoming.get(index, 0.0)
        if owed >= min_seconds and owed > 0.5 * funcs[index][1]:
            entries.append((index, owed))
    if not entries:  # everything is in a cycle: start from the most expensive function
        top = max(funcs, key=lambda index: funcs[index][1])
        entries = [(top, funcs[top][1])]
    if budget is None:
        budget = [max_nodes]
    thread_node = parent.child(thread_frame)

    # Explicit stack: (parent node, function index, time to give it, indexes on the path)
    work: List[Tuple[CallNode, int, float, Tuple[int, ...]]] = [
        (_under_start_stack(thread_node, funcs[index][0], start_stack), index, total, ())
        for index, total in entries
    ]
    while work:
        into, index, total, path = work.pop()
        if total < min_seconds:
            into.self_value += max(total, 0.0)
            continue
        frame, ttot, edges = funcs[index]
        node = into.child(frame)
        budget[0] -= 1
        scale = total / ttot if ttot > 0 else 0.0
        path = path + (index,)
        shares: List[Tuple[int, float]] = []
        outlived: List[Tuple[int, float]] = []
        given = 0.0
        if len(path) < max_depth and budget[0] > 0:
            limit = ttot * _OUTLIVE_RATIO + _OUTLIVE_SLACK
            for callee, edge_time in edges:
                if callee in path:
                    continue
                if edge_time > limit:
                    outlived.append((callee, edge_time * scale))  # a coroutine: its full time
                else:
                    share = edge_time * scale
                    shares.append((callee, share))
                    given += share
        if given > total > 0:  # clock noise: never give children more than the parent had
            shares = [(callee, share * total / given) for callee, share in shares]
            given = total
        shares.extend(outlived)
        node.self_value += max(total - given, 0.0)
        if node.self_value > 0:
            node.self_count = 1  # one synthetic sample per node with self time
        for callee, share in shares:
            work.append((node, callee, share, path))


def _under_start_stack(thread_node: CallNode, entry: Frame, stack: Sequence[Frame]) -> CallNode:
    """The node an entry point hangs from: the start-time stack above it."""
    keys = [(f.filename, f.lineno) for f in stack]
    key = (entry.filename, entry.lineno)
    prefix = stack[: keys.index(key)] if key in keys else stack
    node = thread_node
    for frame in prefix:
        node = node.child(frame)
    return node


def yappi_call_tree(
    threads: Iterable[Tuple[str, int, Iterable[FuncStat], Sequence[Frame], Optional[Frame]]],
    **limits: Any,
) -> CallNode:
    """Build the tree from ``(thread name, ident, stats, stack at start, scope)`` tuples.

    ``scope``, when given (a span), is a level between the thread and its calls.
    """
    root = new_root()
    budget = [int(limits.pop("max_nodes", 200_000))]
    for name, ident, stats, stack, scope in threads:
        thread_frame = Frame(f"{name} (thread {ident})")
        parent, top = (root, thread_frame) if scope is None else (root.child(thread_frame), scope)
        thread_tree(parent, top, stats, budget=budget, start_stack=stack, **limits)
    return root
