"""CPU profiler: the public ``CpuProfiler``, running one of the CPU engines.

The engine does the capturing and encoding; this class validates the options
once and is what triggers and the agent drive.
"""

from __future__ import annotations

from typing import Optional

from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.yappi_engine import YappiEngine

_CLOCKS = ("wall", "cpu")
ENGINES = ("yappi",)


class CpuProfiler(Profiler):
    """CPU profile of every thread.

    ``engine="yappi"``: yappi's deterministic profiler (exact call counts).
    ``clock="wall"`` (default) measures elapsed time, including time blocked on
    I/O or suspended in ``await``; ``clock="cpu"`` measures thread CPU time
    (costlier per call: see the benchmarks). ``builtins=True`` also records C
    functions. The library's own threads are left out of the profile.

    ``format``: ``cpuprofile`` (default), ``pprof`` and ``folded`` are written
    from the derived call tree (each node with self time counts one sample);
    ``pstats`` and ``callgrind`` are written from yappi's exact call graph.
    """

    kind = ProfileKind.CPU_PROFILE

    def __init__(
        self,
        format: Optional[str] = None,  # noqa: A002
        *,
        engine: str = "yappi",
        clock: str = "wall",
        builtins: bool = True,
        max_nodes: int = 200_000,
        by_span: bool = False,
    ) -> None:
        super().__init__(format)
        if engine not in ENGINES:
            raise ValueError(f"Unknown engine {engine!r}: choose one of {', '.join(ENGINES)}.")
        if clock not in _CLOCKS:
            raise ValueError(f"Unknown clock {clock!r}: choose 'wall' or 'cpu'.")
        if by_span and engine == "yappi":
            raise ValueError("by_span=True needs engine='sampling' (yappi keeps no span per call).")
        self.engine = engine
        self.clock = clock
        self.builtins = builtins
        self.max_nodes = max_nodes
        self.by_span = by_span
        self._engine = YappiEngine(
            self.format.name, clock=clock, builtins=builtins, max_nodes=max_nodes
        )

    @property
    def running(self) -> bool:
        return self._engine.running

    def start(self) -> None:
        self._engine.start()

    def stop(self) -> bytes:
        return self._engine.stop()

    def after_fork(self) -> None:
        self._engine.after_fork()

    def end_attributes(self) -> dict:
        return self._engine.end_attributes()

    def attributes(self) -> dict:
        attrs = super().attributes()
        attrs["profiling.cpu.clock"] = self.clock
        attrs["profiling.cpu.engine"] = self.engine
        if self.by_span:
            attrs["profiling.cpu.by_span"] = True
        return attrs

    def __repr__(self) -> str:
        return (
            f"CpuProfiler(engine={self.engine!r}, format={self.format.name!r}, "
            f"clock={self.clock!r})"
        )
