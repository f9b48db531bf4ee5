"""A call tree from yappi's call graph, exact wherever the graph says where time went.

yappi records, per thread, one entry per function (calls, total and own
time) and, per caller→callee edge, the callee's calls, total time and own
time when called from that caller. It records no stacks. The tree is built
one function at a time, callers before callees; a function's *places* are
the nodes its callers' time was put at.

* A function called from one place gets all its callees there, with their
  exact edge times.
* A function called from several places (``shared`` called by ``a`` and
  ``b``) appears under each with the exact time of that caller's edge. The
  time its callees took at each place is exact too — the place's time less
  the function's own time there, which yappi keeps per edge — but not which
  callee ran where. When a single place has callee time, or there is a
  single callee, that settles it (if each place's own time is yappi's, not a
  share of an estimate). Otherwise the callees, largest first, go
  whole to the places whose callee time not yet given can hold them
  (shared out by that time when several can), and are shared out among all
  places only when none can. Such placements are estimates, counted in
  ``Estimated`` with the time yappi's numbers leave open.
* Calls yappi saw start but not their caller were made by frames already
  running when profiling started: they hang from the thread's stack then,
  below the frame that can have made them — the caller of a running call
  of the same function (a loop calling it again), a frame whose function
  calls it elsewhere, a frame whose code loads its name. When several can,
  the one that made the most calls no other frame can have made is chosen
  (an estimate); when none can, the same among all frames.
* What yappi cannot time — the own time of frames running before start or
  still running at stop — is the thread's time in the window less what was
  placed; it goes to the frame running at stop, so each thread totals its
  time in the window (wall clock: the window's length).
* With the wall clock a coroutine's time is its life, suspensions included.
  A coroutine resumed by the event loop rather than awaited by another one
  hangs under ``(coroutines)`` below its thread, beside the thread's own
  stack (which was running other things while it was suspended).
* Recursive calls are not expanded again: their time stays in the outer
  call. otel-profiling's own functions are left out with what they call,
  except its wrappers of application code, which are skipped over.
* Nodes below ``min_seconds`` are folded into their parent; after
  ``max_nodes`` nodes, the rest is folded into the parents' own time.
"""

from __future__ import annotations

import dis
from dataclasses import dataclass
from types import CodeType
from typing import (
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from otel_profiling.formats.calltree import CallNode, Frame, new_root
from otel_profiling.profilers.yappi_stacks import StackFrame
from otel_profiling.profilers.yappi_stats import ASYNC_FLAGS, ChildStat, FuncStat

COROUTINES = Frame("(coroutines)")
_LOADS = {  # instructions that load a name a call can then use
    "LOAD_GLOBAL",
    "LOAD_NAME",
    "LOAD_ATTR",
    "LOAD_METHOD",
    "LOAD_SUPER_ATTR",
    "LOAD_DEREF",
    "LOAD_CLASSDEREF",
    "LOAD_FROM_DICT_OR_GLOBALS",
    "LOAD_FROM_DICT_OR_DEREF",
}
_EPSILON = 1e-7  # seconds: below yappi's clock resolution, sums that differ by this are equal


@dataclass
class ThreadCapture:
    """What the tree is built from for one thread."""

    name: str
    ident: int
    stats: Sequence[FuncStat]
    start_stack: Optional[Sequence[StackFrame]] = None  # None: began during the capture
    stop_stack: Optional[Sequence[StackFrame]] = None  # None: ended during the capture
    total: Optional[float] = None  # its time in the window (wall or CPU); None: unknown


class Estimated(NamedTuple):
    """How much of a tree is an estimate rather than read from yappi's graph."""

    nodes: int  # nodes placed where yappi's numbers allowed other places
    seconds: float  # the time those placements leave open (could be elsewhere)


class _Estimates:
    """The placements that are estimates, per node, with the time that could be elsewhere.

    Estimates are a callee of a function called from several places, whose
    time at each place lies in a range, and calls hung from one of several
    frames running at start.
    """

    def __init__(self) -> None:
        self.open: Dict[int, Tuple[CallNode, float]] = {}  # by id(node)

    def add(self, node: CallNode, seconds: float) -> None:
        """``seconds`` of the time just placed at ``node`` could have been elsewhere."""
        known = self.open.get(id(node))
        self.open[id(node)] = (node, seconds + (known[1] if known else 0.0))

    def summary(self, min_seconds: float) -> Estimated:
        """Over the nodes that hold time (an emptied node left nothing open)."""
        held = [seconds for node, seconds in self.open.values() if seconds >= min_seconds]
        return Estimated(len(held), sum(held))


class _Site:
    """A function's time at one place: the node, its total and own time there, its calls.

    ``exact``: the own time is yappi's (a whole caller edge), not a share of one
    spread over several places, so the callee time there is exact too.
    """

    __slots__ = ("node", "time", "own", "calls", "exact")

    def __init__(
        self, node: Optional[CallNode], time: float, own: float, calls: float, exact: bool = True
    ) -> None:
        self.node = node  # None: calls from otel-profiling or from callers not in the tree
        self.time = time
        self.own = own
        self.calls = calls
        self.exact = exact

    @property
    def callee_time(self) -> float:
        return max(self.time - self.own, 0.0)


def yappi_call_tree(
    threads: Iterable[ThreadCapture],
    *,
    wall: bool = True,
    max_nodes: int = 200_000,
    min_seconds: float = 1e-6,
) -> Tuple[CallNode, Estimated]:
    """One subtree per thread, named ``name (thread ident)``, under a common root."""
    root = new_root()
    estimates = _Estimates()
    budget = [max_nodes]
    tentative: List[Tuple[CallNode, Frame, CallNode]] = []
    for capture in threads:
        _ThreadTree(root, capture, wall, budget, min_seconds, estimates, tentative).build()
    _prune(tentative)
    return root, estimates.summary(min_seconds)


class _ThreadTree:
    """Builds one thread's subtree."""

    def __init__(
        self,
        root: CallNode,
        capture: ThreadCapture,
        wall: bool,
        budget: List[int],
        min_seconds: float,
        estimates: _Estimates,
        tentative: List[Tuple[CallNode, Frame, CallNode]],
    ) -> None:
        self.capture = capture
        self.tentative = tentative  # (parent, frame, node) for nodes that may end up empty
        self.wall = wall
        self.budget = budget
        self.min_seconds = min_seconds
        self.estimates = estimates
        thread = Frame(f"{capture.name} (thread {capture.ident})")
        self.thread_node = root.child(thread)
        tentative.append((root, thread, self.thread_node))
        self.stats: Dict[int, FuncStat] = {s.function_id: s for s in capture.stats}
        self.skipped = {fid for fid, s in self.stats.items() if s.pass_through}  # wrappers
        self.hidden = {fid for fid, s in self.stats.items() if s.own} - self.skipped
        self.by_key = {s.key: s.function_id for s in self.stats.values() if not s.builtin}
        self.edges: Dict[int, List[ChildStat]] = {
            fid: [c for c in s.children if c.callee_id in self.stats]
            for fid, s in self.stats.items()
        }
        self.callers: Dict[int, Set[Tuple[str, int, str]]] = {}
        for fid, edges in self.edges.items():
            for edge in edges:
                if edge.callee_id != fid and fid not in self.hidden:
                    self.callers.setdefault(edge.callee_id, set()).add(self.stats[fid].key)
        self.sites: Dict[int, List[_Site]] = {}
        self.in_flight: Dict[int, CallNode] = {}  # function -> its node on the stack at stop
        self.task_edges: Set[Tuple[int, int]] = set()
        self.loads: Dict[CodeType, FrozenSet[str]] = {}
        self.frames: Dict[int, Frame] = {}
        self.expandable: Dict[int, List[ChildStat]] = {}
        self.placed = 0.0  # own time given to this thread's nodes so far
        self.calling = {  # functions with callees worth a node
            fid for fid, edges in self.edges.items() if any(e.ttot >= min_seconds for e in edges)
        }
        start = capture.start_stack
        if start is None and capture.stop_stack:  # began during the capture: its first frames
            start = self._unseen_prefix(capture.stop_stack)
        self.start_stack: Sequence[StackFrame] = start or ()

    # -- building ------------------------------------------------------------------------
    def build(self) -> None:
        self._seed_roots()
        self._seed_coroutines()
        self._seed_in_flight()
        for fid in self._order():
            self._expand(fid)
        self._add_remainder()

    def _frame(self, fid: int) -> Frame:
        frame = self.frames.get(fid)
        if frame is None:
            stat = self.stats[fid]
            frame = self.frames[fid] = Frame(stat.name, stat.module, stat.lineno)
        return frame

    def _new_node(self, parent: CallNode, fid: int, time: float) -> Optional[CallNode]:
        """``fid``'s node under ``parent`` (``parent`` for a wrapper; None: out of budget)."""
        if fid in self.skipped:
            return parent
        frame = self.frames.get(fid) or self._frame(fid)
        node = parent.children.get(frame)
        if node is None:
            if self.budget[0] <= 0:
                return None
            self.budget[0] -= 1
            node = parent.child(frame)
            if time < self.min_seconds:  # it may hold nothing in the end
                self.tentative.append((parent, frame, node))
        return node

    def _path(self, frames: Sequence[StackFrame], base: Optional[CallNode] = None) -> CallNode:
        """The node for a captured stack, with yappi's names where yappi saw the function."""
        node = self.thread_node if base is None else base
        for item in frames:
            fid = self.by_key.get(item.key)
            frame = self._frame(fid) if fid is not None else item.frame
            child = node.children.get(frame)
            if child is None:
                child = node.child(frame)
                self.tentative.append((node, frame, child))
            node = child
        return node

    def _add_site(self, fid: int, site: _Site) -> None:
        self.sites.setdefault(fid, []).append(site)

    def _seed_roots(self) -> None:
        """Calls made by frames yappi never saw start (running at start, or unseen callers)."""
        incoming: Dict[int, List[float]] = {}
        for fid, edges in self.edges.items():
            for edge in edges:
                if edge.callee_id != fid:
                    into = incoming.setdefault(edge.callee_id, [0.0, 0.0, 0.0])
                    into[0] += edge.ttot
                    into[1] += edge.tsub
                    into[2] += edge.ncall
        anchored: List[Tuple[int, _Site, List[int]]] = []
        for fid, stat in self.stats.items():
            if fid in self.hidden:
                continue
            into = incoming.get(fid, [0.0, 0.0, 0.0])
            time = stat.ttot - into[0]
            if time < self.min_seconds and (into[2] >= stat.ncall or fid not in self.calling):
                continue  # every call has a known caller, or nothing to show
            site = _Site(None, max(time, 0.0), max(stat.tsub - into[1], 0.0), stat.ncall - into[2])
            if self.wall and stat.is_async:
                site.node = self._new_node(self._coroutines(), fid, site.time)
                self._add_site(fid, site)
            else:
                anchored.append((fid, site, self._anchors(fid)))
        # Unambiguous places first: the time they give each start frame tells how long it
        # kept making calls, which settles the ambiguous ones.
        made = [0.0] * (len(self.start_stack) + 1)
        anchored.sort(key=lambda entry: (len(entry[2]) > 1, -entry[1].time))
        for fid, site, lengths in anchored:
            if len(lengths) > 1:  # the frame that made the most calls (ties: the innermost)
                length, estimated = max(lengths, key=lambda n: (made[n], n)), True
            else:
                length, estimated = lengths[0], False
                made[length] += site.time
            site.node = self._new_node(self._path(self.start_stack[:length]), fid, site.time)
            if estimated and site.node is not None:
                self.estimates.add(site.node, site.time)
            self._add_site(fid, site)

    def _coroutines(self) -> CallNode:
        node = self.thread_node.children.get(COROUTINES)
        if node is None:
            node = self.thread_node.child(COROUTINES)
            self.tentative.append((self.thread_node, COROUTINES, node))
        return node

    def _seed_coroutines(self) -> None:
        """Wall clock: coroutines resumed by the event loop hang under ``(coroutines)``."""
        if not self.wall:
            return
        for fid, edges in self.edges.items():
            if fid in self.hidden or self.stats[fid].is_async:
                continue
            for edge in edges:
                callee = self.stats[edge.callee_id]
                if callee.is_async and edge.callee_id not in self.hidden:
                    self.task_edges.add((fid, edge.callee_id))
                    node = self._new_node(self._coroutines(), edge.callee_id, edge.ttot)
                    site = _Site(node, edge.ttot, edge.tsub, edge.ncall)
                    self._add_site(edge.callee_id, site)

    def _seed_in_flight(self) -> None:
        """Functions on the stack at stop: their unfinished call's callees go there.

        With the wall clock, from the first coroutine down that is the coroutine's
        life under ``(coroutines)``: what it awaited ran while it was off the stack.
        """
        stop = self.capture.stop_stack or ()
        base, begin = self.thread_node, 0
        for depth, item in enumerate(stop):
            if self.wall and begin == 0 and item.code.co_flags & ASYNC_FLAGS:
                base, begin = self._coroutines(), depth
            fid = self.by_key.get(item.key)
            if fid is not None:
                self.in_flight[fid] = self._path(stop[begin : depth + 1], base)

    def _unseen_prefix(self, stack: Sequence[StackFrame]) -> List[StackFrame]:
        """The outermost frames of ``stack`` that yappi has no entry for."""
        prefix: List[StackFrame] = []
        for item in stack:
            if item.key in self.by_key:
                break
            prefix.append(item)
        return prefix

    def _anchors(self, fid: int) -> List[int]:
        """Where calls of ``fid`` with no known caller may hang, as lengths of the start stack.

        The frames that may have made them: the caller of a running call of
        ``fid`` (it may call it again), a frame of a function that calls
        ``fid`` elsewhere, a frame whose code loads ``fid``'s name; if none,
        any of them.
        """
        start = self.start_stack
        if not start:
            return [0]
        stat = self.stats[fid]
        callers = self.callers.get(fid, set())
        lengths = [
            depth + 1
            for depth, item in enumerate(start)
            if item.key in callers
            or stat.short_name in self._loads(item.code)
            or (depth + 1 < len(start) and start[depth + 1].key == stat.key)
        ]
        return lengths or list(range(1, len(start) + 1))

    def _loads(self, code: CodeType) -> FrozenSet[str]:
        """The global, attribute and method names ``code`` loads (what it can call by name)."""
        names = self.loads.get(code)
        if names is None:
            names = self.loads[code] = frozenset(
                instruction.argval
                for instruction in dis.get_instructions(code)
                if instruction.opname in _LOADS and isinstance(instruction.argval, str)
            )
        return names

    def _order(self) -> List[int]:
        """Functions with a place, callers before callees (depth-first, reversed post-order).

        Sets ``expandable``: per function, the edges to place below it — not
        recursive ones (to a function on the path), not coroutines resumed by
        the event loop (placed already).
        """
        seeds = sorted(
            set(self.sites) | set(self.in_flight),
            key=lambda fid: (-self.stats[fid].ttot, fid),
        )
        state: Dict[int, int] = {}  # 1: on the current path, 2: done
        post: List[int] = []
        for seed in seeds:
            if seed in state:
                continue
            state[seed] = 1
            work: List[Tuple[int, Iterator[ChildStat]]] = [(seed, iter(self._callees(seed)))]
            while work:
                fid, callees = work[-1]
                for edge in callees:
                    callee = edge.callee_id
                    if state.get(callee) == 1:
                        continue  # recursive: its time stays in the outer call
                    self.expandable[fid].append(edge)
                    if callee not in state and callee not in self.hidden:
                        state[callee] = 1
                        work.append((callee, iter(self._callees(callee))))
                        break
                else:
                    work.pop()
                    state[fid] = 2
                    post.append(fid)
        post.reverse()
        return post

    def _callees(self, fid: int) -> List[ChildStat]:
        """Edges that may be placed below ``fid``, largest first."""
        self.expandable[fid] = []
        edges = [
            edge
            for edge in self.edges[fid]
            if edge.callee_id != fid and (fid, edge.callee_id) not in self.task_edges
        ]
        edges.sort(key=lambda edge: -edge.ttot)
        return edges

    def _expand(self, fid: int) -> None:
        """Give ``fid``'s callees their places below ``fid``'s places."""
        sites = self._merged_sites(fid)
        if not sites:
            return
        edges = self.expandable.get(fid, ())
        shares: Iterable[Tuple[int, ChildStat, float, float]] = (
            [(0, edge, 1.0, 0.0) for edge in edges] if len(sites) == 1 else _share_out(sites, edges)
        )
        hidden, calling, min_seconds = self.hidden, self.calling, self.min_seconds
        placed = [0.0] * len(sites)
        for index, edge, fraction, uncertain in shares:
            site = sites[index]
            time = edge.ttot * fraction
            callee = edge.callee_id
            if site.node is None or callee in hidden:
                placed[index] += time  # not shown: the library's, or calls with no place here
                continue
            if time < min_seconds and callee not in calling:
                continue  # folded into the caller's own time
            node = self._new_node(site.node, callee, time)
            if node is None:
                continue  # out of nodes: folded into the caller's own time
            placed[index] += time
            if uncertain > _EPSILON and node is not site.node:
                self.estimates.add(node, min(uncertain, time))
            own, calls = edge.tsub * fraction, edge.ncall * fraction
            child = _Site(node, time, own, calls, exact=fraction == 1.0)
            known = self.sites.get(callee)
            if known is None:
                self.sites[callee] = [child]
            else:
                known.append(child)
        if fid in self.skipped:
            return  # the wrapper's own time is the library's
        for site, given in zip(sites, placed, strict=True):
            if site.node is not None and site.time > given:
                site.node.self_value += site.time - given
                self.placed += site.time - given

    def _merged_sites(self, fid: int) -> List[_Site]:
        """``fid``'s places, one per node, with its call running at stop and its unplaced calls."""
        stat = self.stats[fid]
        sites = self.sites.pop(fid, [])
        by_node: Dict[Optional[int], _Site] = {}
        if len(sites) > 1:
            for site in sites:
                key = None if site.node is None else id(site.node)
                known = by_node.get(key)
                if known is None:
                    by_node[key] = site
                else:
                    known.time += site.time
                    known.own += site.own
                    known.calls += site.calls
                    known.exact = known.exact and site.exact
            sites = list(by_node.values())
        elif sites and sites[0].node is not None:
            by_node[id(sites[0].node)] = sites[0]
        placed_time = sum(site.time for site in sites)
        unplaced = stat.ttot - placed_time
        if unplaced > self.min_seconds and sites:  # calls from the library or callers not shown
            own = max(stat.tsub - sum(site.own for site in sites), 0.0)
            exact = all(site.exact for site in sites)
            sites.append(_Site(None, unplaced, min(own, unplaced), 0.0, exact))
        node = self.in_flight.get(fid)
        if node is not None:
            callee_time = sum(edge.ttot for edge in self.edges[fid] if edge.callee_id != fid)
            unfinished = callee_time - sum(site.callee_time for site in sites)
            merged = by_node.get(id(node))
            if merged is not None:
                merged.time += max(unfinished, 0.0)
            elif unfinished > self.min_seconds or not sites:  # its own time there is unknown
                sites.append(_Site(node, max(unfinished, 0.0), 0.0, 0.0, exact=not sites))
        return sites

    def _add_remainder(self) -> None:
        """The thread's time yappi did not measure goes to the frame running at stop."""
        total, stop = self.capture.total, self.capture.stop_stack
        if total is None or not stop:
            return
        coroutines = self.thread_node.children.get(COROUTINES)
        remainder = total - self.placed + (0.0 if coroutines is None else coroutines.total_value())
        if remainder >= self.min_seconds:
            self._path(stop).self_value += remainder


def _share_out(
    sites: Sequence[_Site], edges: Sequence[ChildStat]
) -> List[Tuple[int, ChildStat, float, float]]:
    """Each callee edge's fraction at each site, and the time of it that could be elsewhere.

    ``edges`` come largest first. The time that could be elsewhere is the
    width of the range yappi's numbers leave for the placement: 0 when they
    settle it.
    """
    if len(sites) == 1:
        return [(0, edge, 1.0, 0.0) for edge in edges]
    budgets = [site.time - site.own if site.time > site.own else 0.0 for site in sites]
    room = budgets[:]  # callee time not yet given, per site
    live = [index for index, value in enumerate(room) if value > _EPSILON]
    placed: List[Tuple[int, ChildStat, float]] = []
    if not live:  # no callee time anywhere: by total time, then by calls
        weights = [site.time for site in sites]
        if sum(weights) <= 0:
            weights = [site.calls for site in sites]
        if sum(weights) <= 0:
            weights = [1.0] * len(sites)
        total = sum(weights)
        placed = [(i, e, w / total) for e in edges for i, w in enumerate(weights) if w > 0]
    elif len(live) == 1:
        placed = [(live[0], edge, 1.0) for edge in edges]
    else:
        for edge in edges:
            if edge.ttot <= _EPSILON:
                continue
            fits = [i for i in live if room[i] >= edge.ttot - _EPSILON]
            pool = fits or live
            weights = [max(room[i], 0.0) for i in pool]
            total = sum(weights)
            if total <= 0:
                pool, weights = live, [budgets[i] for i in live]
                total = sum(weights)
            for index, weight in zip(pool, weights, strict=True):
                if weight > 0:
                    placed.append((index, edge, weight / total))
                    room[index] -= edge.ttot * weight / total
    bounds = _Bounds(sites, budgets, edges)
    return [(i, e, fraction, bounds.open(i, e)) for i, e, fraction in placed]


class _Bounds:
    """How much of a callee's time at a site yappi's numbers leave open.

    The callee's time at site ``i`` lies between what the other sites cannot
    hold and what site ``i`` can hold. With every site's own time known, a
    site holds exactly its callee time and the callees fill it; otherwise only
    the site's total time bounds it.
    """

    def __init__(
        self, sites: Sequence[_Site], budgets: List[float], edges: Sequence[ChildStat]
    ) -> None:
        self.exact = all(site.exact for site in sites)
        self.holds = budgets if self.exact else [site.time for site in sites]
        self.all_held = sum(self.holds)
        self.all_callees = sum(edge.ttot for edge in edges)

    def open(self, index: int, edge: ChildStat) -> float:
        held, total = self.holds[index], edge.ttot
        low = max(0.0, total - (self.all_held - held))
        if self.exact:
            low = max(low, held - (self.all_callees - total))
        return max(min(total, held) - low, 0.0)


def _prune(tentative: List[Tuple[CallNode, Frame, CallNode]]) -> None:
    """Remove the nodes made for calls that turned out to hold nothing.

    Later nodes first: a node's children were made after it.
    """
    for parent, frame, node in reversed(tentative):
        if not node.children and node.self_value <= 0 and parent.children.get(frame) is node:
            del parent.children[frame]
