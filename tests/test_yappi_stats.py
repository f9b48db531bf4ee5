"""yappi's statistics read through its C enumerator match its public API."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, Tuple

import pytest
import yappi

from otel_profiling.profilers import yappi_stats
from otel_profiling.profilers.yappi_stats import FuncStat, public_func_stats, read_func_stats


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def worker() -> None:
    calls: list = []
    for _ in range(5):
        calls.append(fib(12))


@pytest.fixture
def recorded() -> Iterator[None]:
    """A stopped yappi session over two threads (stats cleared afterwards)."""
    yappi.clear_stats()
    yappi.set_clock_type("wall")
    yappi.start(builtins=True)
    thread = threading.Thread(target=worker, name="stats-worker")
    thread.start()
    worker()
    thread.join()
    yappi.stop()
    yield
    yappi.clear_stats()


def summary(stats: Any) -> Dict[Tuple[int, str, str, int], Tuple[Any, ...]]:
    """Comparable content: counts, times, names and callees (by name) per thread and function."""
    names = {(s.ctx_id, s.function_id): (s.module, s.lineno, s.name) for s in stats}
    result = {}
    for s in stats:
        callees = sorted(
            (names[(s.ctx_id, c.callee_id)], c.ncall, c.nactualcall, round(c.ttot, 9))
            for c in s.children
            if (s.ctx_id, c.callee_id) in names
        )
        key = (s.ctx_id, s.module, s.name, s.lineno)
        result[key] = (s.ncall, s.nactualcall, s.builtin, round(s.ttot, 9), callees, s.short_name)
    return result


def test_enumerator_matches_the_public_api(recorded: None) -> None:
    fast, public = read_func_stats(), public_func_stats()
    assert summary(fast) == summary(public)
    fibs = [s for s in fast if s.name == "fib"]
    assert len({s.ctx_id for s in fibs}) == 2, "one entry per thread, not merged"
    assert all((s.ncall, s.nactualcall) == (5 * 465, 5) for s in fibs)
    assert all(isinstance(s, FuncStat) for s in fast)
    code = fib.__code__
    assert all(s.code is code for s in fibs), "the code object, to match stack frames"
    assert all(s.key == (code.co_filename, code.co_firstlineno, "fib") for s in fibs)
    appends = [s for s in fast if s.name == "<method 'append' of 'list' objects>"]
    assert appends and all(s.short_name == "append" and s.code is None for s in appends)
    assert not [s for s in fast if s.module.endswith("yappi.py")], "yappi's own functions"


def test_without_the_enumerator_the_public_api_is_read(
    recorded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = summary(read_func_stats())
    monkeypatch.setattr(yappi_stats, "_yappi", None)  # a yappi without the C enumerator
    assert summary(read_func_stats()) == expected
