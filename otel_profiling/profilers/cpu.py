"""CPU profiler: the public ``CpuProfiler``, running one of the CPU engines.

The engine does the capturing and encoding; this class validates the options
once and is what triggers and the agent drive.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

from opentelemetry.util.types import AttributeValue

from otel_profiling.formats import get_format
from otel_profiling.formats.samples import SampleCapture
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers import main_signal
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.sampling_engine import (
    DEFAULT_INTERVAL,
    SamplingEngine,
    check_interval,
    sampling_formats,
)
from otel_profiling.profilers.yappi_engine import YappiEngine

_CLOCKS = ("wall", "cpu")
ENGINES = ("sampling", "yappi")


def resolve_engine(engine: Optional[str], format_name: str) -> str:
    """The engine to run: ``engine``, or by default ``sampling`` (``yappi`` for call graphs)."""
    from_samples = get_format(ProfileKind.CPU_PROFILE, format_name).accepts(SampleCapture)
    if engine is None:
        return "sampling" if from_samples else "yappi"
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    if engine == "sampling" and not from_samples:
        raise ValueError(
            f"format={format_name!r} is a call-graph format written from yappi's exact call "
            f"counts: use engine='yappi' (or leave engine unset) with it, or a format the "
            f"sampling engine writes ({', '.join(sampling_formats())})."
        )
    return engine


class CpuProfiler(Profiler):
    """CPU profile of every thread.

    ``engine="sampling"`` (the default): a library thread samples every
    thread's stack every ``interval`` seconds (default 0.01): exact stacks, a
    real timeline, trace ids per sample, about 1 % cost. ``engine="yappi"``:
    yappi's deterministic profiler, exact call counts at a higher cost;
    ``pstats`` and ``callgrind`` are always written by it (it is the default
    for them).

    ``clock="wall"`` (default) counts elapsed time, waiting included (and,
    with sampling, asyncio tasks suspended in ``await``); ``clock="cpu"``
    counts each thread's CPU time. ``by_span=True`` (sampling) adds a
    ``span <id>`` level under each thread for samples taken in a span.
    With sampling and ``clock="cpu"``, the main thread is sampled by a timer
    signal on its own CPU clock (Linux; see ``profilers/main_signal.py``), so
    short bursts of work that end in a wait keep their CPU time;
    ``main_thread_signal=False`` turns it off (default: the
    ``OTEL_PROFILING_CPU_SIGNAL`` variable, ``true`` unless set).
    ``builtins`` and ``max_nodes`` apply to the yappi engine. The library's
    own threads and frames are left out of the profile.
    """

    kind = ProfileKind.CPU_PROFILE

    def __init__(
        self,
        format: Optional[str] = None,  # noqa: A002
        *,
        engine: Optional[str] = None,
        interval: float = DEFAULT_INTERVAL,
        clock: str = "wall",
        builtins: bool = True,
        max_nodes: int = 200_000,
        by_span: bool = False,
        main_thread_signal: Optional[bool] = None,
    ) -> None:
        super().__init__(format)
        if clock not in _CLOCKS:
            raise ValueError(f"Unknown clock {clock!r}: choose 'wall' or 'cpu'.")
        self.engine = resolve_engine(engine, self.format.name)
        self.interval = check_interval(interval)
        self.clock = clock
        self.builtins = builtins
        self.max_nodes = max_nodes
        self.by_span = by_span
        self._engine: Union[SamplingEngine, YappiEngine]
        if self.engine == "sampling":
            if main_thread_signal is None and clock == "cpu":
                main_thread_signal = main_signal.enabled_from_env()
            self._engine = SamplingEngine(
                self.format,
                interval=self.interval,
                clock=clock,
                by_span=by_span,
                main_thread_signal=main_thread_signal is not False,
            )
        else:
            if by_span:
                raise ValueError(
                    "by_span=True needs the sampling engine (it groups samples by the span "
                    "current when each was taken): use engine='sampling', or drop by_span."
                )
            self._engine = YappiEngine(
                self.format, clock=clock, builtins=builtins, max_nodes=max_nodes
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

    def attributes(self) -> dict:
        attrs = super().attributes()
        attrs["profiling.cpu.clock"] = self.clock
        attrs["profiling.cpu.engine"] = self.engine
        if self.engine == "sampling":
            attrs["profiling.cpu.interval"] = self.interval
        if self.by_span:
            attrs["profiling.cpu.by_span"] = True
        return attrs

    def end_attributes(self) -> Mapping[str, AttributeValue]:
        return self._engine.end_attributes()

    def __repr__(self) -> str:
        return (
            f"CpuProfiler(engine={self.engine!r}, format={self.format.name!r}, "
            f"clock={self.clock!r})"
        )
