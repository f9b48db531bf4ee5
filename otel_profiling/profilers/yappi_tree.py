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

# A callee whose time under a caller exceeds the caller's own total cannot have
# run inside it: it is a coroutine resumed by many short calls (yappi's wall
# clock counts a coroutine from its first call to its return, suspensions
# included). Small excesses are clock noise.
_OUTLIVE_RATIO = 1.05
_OUTLIVE_SLACK = 1e-4


def _frame(stat: Any) -> Frame:
    return Frame(str(stat.name), str(stat.module or ""), int(stat.lineno or 0))


def thread_tree(
    parent: CallNode,
    thread_frame: Frame,
    stats: Iterable[Any],
    *,
    max_depth: int = 256,
    max_nodes: int = 200_000,
    min_seconds: float = 1e-6,
    budget: Optional[List[int]] = None,
    start_stack: Sequence[Frame] = (),
) -> None:
    """Add one thread's yappi ``YFuncStats`` under ``parent`` as a subtree.

    ``start_stack`` is the thread's stack (outermost first) when profiling began.
    """
    funcs: Dict[int, Any] = {}
    called: Set[int] = set()
    for stat in stats:
        funcs[stat.index] = stat
        for child in stat.children:
            if child.index != stat.index:
                called.add(child.index)
    if not funcs:
        return
    roots = [stat for index, stat in funcs.items() if index not in called]
    if not roots:  # everything is in a cycle: start from the most expensive function
        roots = [max(funcs.values(), key=lambda s: s.ttot)]
    if budget is None:
        budget = [max_nodes]
    thread_node = parent.child(thread_frame)

    # Explicit stack: (parent node, function stat, time to give it, path of indexes)
    work: List[Tuple[CallNode, Any, float, Tuple[int, ...]]] = [
        (_under_start_stack(thread_node, _frame(stat), start_stack), stat, float(stat.ttot), ())
        for stat in roots
    ]
    while work:
        into, stat, total, path = work.pop()
        if total < min_seconds:
            into.self_value += max(total, 0.0)
            continue
        node = into.child(_frame(stat))
        budget[0] -= 1
        scale = total / stat.ttot if stat.ttot > 0 else 0.0
        path = path + (stat.index,)
        shares: List[Tuple[Any, float]] = []
        outlived: List[Tuple[Any, float]] = []
        if len(path) < max_depth and budget[0] > 0:
            for edge in stat.children:
                callee = funcs.get(edge.index)
                if callee is None or edge.index in path:
                    continue
                share = float(edge.ttot) * scale
                if edge.ttot > stat.ttot * _OUTLIVE_RATIO + _OUTLIVE_SLACK:
                    outlived.append((callee, share))  # a coroutine: its own full time
                else:
                    shares.append((callee, share))
        given = sum(share for _, share in shares)
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
    threads: Iterable[Tuple[str, int, Iterable[Any], Sequence[Frame]]], **limits: Any
) -> CallNode:
    """Build the tree from ``(thread name, ident, YFuncStats, stack at start)`` tuples."""
    root = new_root()
    budget = [int(limits.pop("max_nodes", 200_000))]
    for name, ident, stats, stack in threads:
        thread_frame = Frame(f"{name} (thread {ident})")
        thread_tree(root, thread_frame, stats, budget=budget, start_stack=stack, **limits)
    return root
