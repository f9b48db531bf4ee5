"""Deriving the call tree from yappi's call graph, on graphs whose truth is known.

The numbers are what yappi records (per function and per caller→callee edge:
calls, total time, own time); each case states which stacks produced them.
"""

from __future__ import annotations

import asyncio
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from otel_profiling.formats.calltree import CallNode, Frame
from otel_profiling.profilers.yappi_stacks import StackFrame
from otel_profiling.profilers.yappi_stats import ChildStat, FuncStat
from otel_profiling.profilers.yappi_tree import ThreadCapture, yappi_call_tree

FILE = "/app/service.py"
IDS = {
    name: index
    for index, name in enumerate(
        ["main", "handler_a", "handler_b", "shared", "slow", "cheap", "fib", "lib", "log", "x", "y"]
    )
}
Edge = Tuple[str, int, float, float]  # callee, calls, total, own


def stat(
    name: str,
    ncall: int,
    ttot: float,
    tsub: float,
    edges: Sequence[Edge] = (),
    module: str = FILE,
    code: Optional[object] = None,
) -> FuncStat:
    children = [ChildStat(IDS[c], n, n, total, own) for c, n, total, own in edges]
    line = IDS[name] + 1
    return FuncStat(
        name,
        module,
        line,
        ncall,
        ncall,
        False,
        ttot,
        tsub,
        IDS[name],
        children,
        1,
        code,
        name,  # type: ignore[arg-type]
    )


def tree(stats: List[FuncStat], **capture: object) -> Tuple[Dict[Tuple[str, ...], float], float]:
    """{path below the thread: total seconds}, and the seconds the tree leaves open."""
    root, estimated = yappi_call_tree([ThreadCapture("T", 1, stats, **capture)])  # type: ignore[arg-type]
    (thread,) = root.children.values()
    totals: Dict[Tuple[str, ...], float] = {}

    def visit(node: CallNode, path: Tuple[str, ...]) -> float:
        total = node.self_value + sum(
            visit(child, path + (child.frame.function,)) for child in node.children.values()
        )
        totals[path] = total
        return total

    visit(thread, ())
    return totals, estimated.seconds


def test_callees_of_a_shared_function_go_where_they_fit() -> None:
    # a: 50 x shared(False) -> cheap; b: 1 x shared(True) -> slow (times from a real run)
    stats = [
        stat(
            "main",
            1,
            2.0,
            0.01,
            [("handler_a", 500, 0.0194, 0.0089), ("handler_b", 500, 1.97, 0.0004)],
        ),
        stat("handler_a", 500, 0.0194, 0.0089, [("shared", 25000, 0.0105, 0.0078)]),
        stat("handler_b", 500, 1.97, 0.0004, [("shared", 500, 1.9694, 0.0006)]),
        stat(
            "shared",
            25500,
            1.9799,
            0.0084,
            [("slow", 500, 1.9688, 1.9688), ("cheap", 25000, 0.0027, 0.0027)],
        ),
        stat("slow", 500, 1.9688, 1.9688),
        stat("cheap", 25000, 0.0027, 0.0027),
    ]
    totals, open_seconds = tree(stats)
    assert ("main", "handler_a", "shared", "slow") not in totals
    assert ("main", "handler_b", "shared", "cheap") not in totals
    assert totals[("main", "handler_b", "shared", "slow")] == pytest.approx(1.9688)
    assert totals[("main", "handler_a", "shared", "cheap")] == pytest.approx(0.0027)
    assert totals[("main", "handler_a", "shared")] == pytest.approx(0.0105)
    assert totals[("main",)] == pytest.approx(2.0)
    # the numbers allow moving up to cheap's time between the two places, both ways
    assert open_seconds == pytest.approx(2 * 0.0027)


def test_callees_that_fit_everywhere_are_shared_out() -> None:
    # both callers call shared, which calls x and y alike: nothing tells them apart
    stats = [
        stat("main", 1, 1.0, 0.0, [("handler_a", 10, 0.5, 0.0), ("handler_b", 10, 0.5, 0.0)]),
        stat("handler_a", 10, 0.5, 0.0, [("shared", 10, 0.5, 0.05)]),
        stat("handler_b", 10, 0.5, 0.0, [("shared", 10, 0.5, 0.05)]),
        stat("shared", 20, 1.0, 0.1, [("x", 20, 0.45, 0.45), ("y", 20, 0.45, 0.45)]),
        stat("x", 20, 0.45, 0.45),
        stat("y", 20, 0.45, 0.45),
    ]
    totals, open_seconds = tree(stats)
    for handler in ("handler_a", "handler_b"):
        assert totals[("main", handler, "shared", "x")] == pytest.approx(0.225)
        assert totals[("main", handler, "shared", "y")] == pytest.approx(0.225)
        assert totals[("main", handler, "shared")] == pytest.approx(0.5)
    assert open_seconds > 0


def test_one_callee_or_one_place_with_callee_time_is_exact() -> None:
    # shared called from two places, one callee: each place's callee time is that callee's
    one_callee = [
        stat("main", 1, 1.0, 0.0, [("handler_a", 5, 0.7, 0.0), ("handler_b", 5, 0.3, 0.0)]),
        stat("handler_a", 5, 0.7, 0.0, [("shared", 5, 0.7, 0.1)]),
        stat("handler_b", 5, 0.3, 0.0, [("shared", 5, 0.3, 0.1)]),
        stat("shared", 10, 1.0, 0.2, [("x", 10, 0.8, 0.8)]),
        stat("x", 10, 0.8, 0.8),
    ]
    totals, open_seconds = tree(one_callee)
    assert totals[("main", "handler_a", "shared", "x")] == pytest.approx(0.6)
    assert totals[("main", "handler_b", "shared", "x")] == pytest.approx(0.2)
    assert open_seconds == 0
    # handler_b's calls never reach a callee (a cache hit): all callees ran under handler_a
    one_place = [
        stat("main", 1, 1.0, 0.0, [("handler_a", 5, 0.9, 0.0), ("handler_b", 5, 0.1, 0.0)]),
        stat("handler_a", 5, 0.9, 0.0, [("shared", 5, 0.9, 0.1)]),
        stat("handler_b", 5, 0.1, 0.0, [("shared", 5, 0.1, 0.1)]),
        stat("shared", 10, 1.0, 0.2, [("x", 3, 0.5, 0.5), ("y", 2, 0.3, 0.3)]),
        stat("x", 3, 0.5, 0.5),
        stat("y", 2, 0.3, 0.3),
    ]
    totals, open_seconds = tree(one_place)
    assert totals[("main", "handler_a", "shared", "x")] == pytest.approx(0.5)
    assert totals[("main", "handler_a", "shared", "y")] == pytest.approx(0.3)
    assert ("main", "handler_b", "shared", "x") not in totals
    assert open_seconds == 0


def test_recursion_is_not_expanded_again() -> None:
    stats = [
        stat("main", 1, 1.0, 0.0, [("fib", 1, 1.0, 0.2)]),
        stat("fib", 177, 1.0, 1.0, [("fib", 176, 0.8, 0.8)]),
    ]
    totals, _ = tree(stats)
    assert totals[("main", "fib")] == pytest.approx(1.0)
    assert ("main", "fib", "fib") not in totals


def test_the_librarys_functions_are_left_out_with_what_they_call() -> None:
    from otel_profiling._threads import PACKAGE_DIR

    library = f"{PACKAGE_DIR}/agent.py"
    stats = [
        stat("main", 1, 1.0, 0.5, [("lib", 1, 0.3, 0.1), ("x", 1, 0.2, 0.2)]),
        stat("lib", 1, 0.3, 0.1, [("log", 1, 0.2, 0.2)], module=library),
        stat("log", 1, 0.2, 0.2),  # a standard library function the library called
        stat("x", 1, 0.2, 0.2),
    ]
    totals, _ = tree(stats)
    assert set(totals) == {(), ("main",), ("main", "x")}
    assert totals[("main",)] == pytest.approx(0.7), "main's own time, without the library's"


def frames(*functions: object) -> List[StackFrame]:
    result = []
    for function in functions:
        code = function.__code__  # type: ignore[attr-defined]
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        result.append(StackFrame(Frame(code.co_name, key[0], key[1]), key, code))
    return result


def running_loop() -> None:  # a loop already running when profiling starts
    while True:
        step()


def step() -> None:
    pass


def test_calls_of_frames_running_at_start_hang_from_them_and_the_rest_of_the_window_too() -> None:
    code = step.__code__
    stats = [
        FuncStat("step", code.co_filename, code.co_firstlineno, 100, 100, False, 0.6, 0.6, 1,
                 [], 1, code, "step"),
    ]  # fmt: skip
    stack = frames(running_loop)
    root, _ = yappi_call_tree(
        [ThreadCapture("T", 1, stats, start_stack=stack, stop_stack=stack, total=1.0)]
    )
    (thread,) = root.children.values()
    (loop,) = thread.children.values()
    assert loop.frame.function == "running_loop"
    assert [child.frame.function for child in loop.children.values()] == ["step"]
    assert loop.total_value() == pytest.approx(1.0), "the window"
    assert loop.self_value == pytest.approx(0.4), "what yappi did not time: the loop's own"


async def awaited() -> None:
    await asyncio.sleep(0)


def test_coroutines_resumed_by_the_event_loop_hang_beside_the_threads_stack() -> None:
    code = awaited.__code__
    stats = [
        stat("main", 100, 0.1, 0.1, [("x", 100, 5.0, 0.0)]),  # the loop resuming a task
        FuncStat("x", FILE, 1, 1, 1, False, 5.0, 5.0, IDS["x"], [], 1, code, "x"),
    ]
    totals, _ = tree(stats)
    assert totals[("(coroutines)", "x")] == pytest.approx(5.0)
    assert totals[("main",)] == pytest.approx(0.1), "its life is not the resumer's time"
    root, _ = yappi_call_tree([ThreadCapture("T", 1, stats)], wall=False)
    assert Frame("(coroutines)") not in next(iter(root.children.values())).children


def test_a_bounded_tree_keeps_every_second() -> None:
    stats = [
        stat("main", 1, 1.0, 0.1, [("handler_a", 1, 0.5, 0.1), ("handler_b", 1, 0.4, 0.1)]),
        stat("handler_a", 1, 0.5, 0.1, [("x", 1, 0.4, 0.4)]),
        stat("handler_b", 1, 0.4, 0.1, [("y", 1, 0.3, 0.3)]),
        stat("x", 1, 0.4, 0.4),
        stat("y", 1, 0.3, 0.3),
    ]
    root, _ = yappi_call_tree([ThreadCapture("T", 1, stats)], max_nodes=3)
    functions = [node.frame.function for node, depth in root.walk() if depth >= 2]
    assert len(functions) == 3, functions  # the rest is folded into its callers
    assert root.total_value() == pytest.approx(1.0)
