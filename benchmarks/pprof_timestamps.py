"""Size cost of keeping the timeline in the sampling engine's pprof (``timestamp`` labels).

The sampling engine writes one pprof sample per run of identical samples, each
with a ``timestamp`` label, so that per-sample timestamps survive the spool and
reach OTLP. The baseline, in the same run on the same captures, is the encoder
before that change (one sample per stack, thread and span, no timestamp),
taken from git (``--baseline-commit``); the default CPU format, ``.cpuprofile``
(which keeps the timeline as well, uncompressed), is shown beside them.

    python benchmarks/pprof_timestamps.py [--seconds 5] [--threads 4]
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Callable, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_profiling.formats.cpuprofile import encode_cpuprofile_timeline  # noqa: E402
from otel_profiling.formats.pprof import encode_pprof_samples  # noqa: E402
from otel_profiling.profilers.sampling_engine import SamplingEngine  # noqa: E402

BASELINE_COMMIT = "1d36aa6"


def baseline_encoder(commit: str) -> Callable[..., bytes]:
    source = subprocess.run(
        ["git", "show", f"{commit}:otel_profiling/formats/pprof.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("pprof_baseline")
    exec(compile(source, "pprof_baseline.py", "exec"), module.__dict__)  # noqa: S102
    return module.encode_pprof_samples  # type: ignore[no-any-return]


def steady(stop: threading.Event) -> None:
    """Long runs of one stack: the best case for run-length rows."""
    while not stop.is_set():
        sum(i * i for i in range(20_000))


def level(depth: int, stop: threading.Event) -> None:
    if depth:
        level(depth - 1, stop)
    else:
        sum(i for i in range(300))


def changing(stop: threading.Event) -> None:
    """A stack that changes between most samples: the worst case."""
    k = 0
    while not stop.is_set():
        level(k % 12, stop)
        k += 1


def capture(workload: Callable[[threading.Event], None], seconds: float, threads: int):  # type: ignore[no-untyped-def]
    stop = threading.Event()
    workers: List[threading.Thread] = [
        threading.Thread(target=workload, args=(stop,)) for _ in range(threads)
    ]
    engine = SamplingEngine("pprof")
    engine.start()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return engine.stop_capture()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    args = parser.parse_args()
    old = baseline_encoder(args.baseline_commit)
    print(f"{args.threads} threads, {args.seconds:g} s, 100 Hz")
    print(
        "| workload | samples | rows | baseline gz | with timestamps gz | raw ratio | gz ratio "
        "| cpuprofile |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, workload in (("steady", steady), ("changing", changing)):
        cap = capture(workload, args.seconds, args.threads)
        before, after = old(cap), encode_pprof_samples(cap)
        raw_before, raw_after = len(gzip.decompress(before)), len(gzip.decompress(after))
        print(
            f"| {name} | {cap.sample_total} | {len(cap.sample_time)} | {len(before)} B | "
            f"{len(after)} B | {raw_after / raw_before:.2f}x | {len(after) / len(before):.2f}x | "
            f"{len(encode_cpuprofile_timeline(cap))} B |"
        )


if __name__ == "__main__":
    main()
