"""CPU profiling cost, side by side in one process: medians of interleaved rounds.

Two single-threaded workloads:

* ``fib``: call-heavy recursion (about 7 million Python calls);
* ``web``: a web-handler mix: JSON decode and encode, regular expressions,
  small objects, sorting.

Each round runs every case once, in a rotated order, on both workloads:

* ``none``: no profiler;
* ``plain-100Hz``: a thread that only reads ``sys._current_frames()`` 100
  times a second: the floor of any sampler written in Python, which must
  take the GIL from the program at each sample;
* ``sampling``: ``CpuProfiler()``, the default engine, at 100 Hz;
* ``yappi-engine``: ``CpuProfiler(engine="yappi")``;
* ``bare-yappi``: ``yappi.start(builtins=True)``, ``stop()``, ``get_func_stats()``;
* ``cProfile``: ``cProfile.Profile`` enabled around the workload;
* ``pyinstrument``: ``pyinstrument.Profiler()`` (its default 1 ms interval).

The workload's wall time is measured inside each case (profiler start and
stop excluded); each round's time is divided by that round's ``none`` and
the median of those ratios is reported, so load changes between rounds hit
all cases alike. ``start to bytes`` adds starting, stopping and encoding.
``CPU ratio`` compares the process's CPU time during the workload (all its
threads, so the sampler's too): on a machine shared with other jobs it is far
less noisy than wall time, which also pays for every wait the scheduler adds.

Then the sampler's own CPU time (the ``profiling.cpu.sampler_cpu_seconds``
attribute: the sampling thread's CPU time plus the first and last samples)
as a share of one core, with 20 application threads at 100 Hz: 20 threads
waiting in ``queue.get()`` 15 calls deep, and 20 threads all running the web
workload; each window alternates with one whose sampler takes a sample every
interval even while the application is still (``pace.MAX_STRETCH = 1``), for
a side-by-side view.

    pip install -e '.[bench]'      # pyinstrument
    python benchmarks/cpu_overhead.py [--rounds 9] [--only fib|web] [--threads-only]
                                      [--thread-rounds 5]
"""

from __future__ import annotations

import _thread
import argparse
import cProfile
import json
import queue
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import yappi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_profiling.profilers import CpuProfiler, pace  # noqa: E402

# -- workloads -------------------------------------------------------------------------------


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def fib_workload() -> int:
    return sum(fib(23) for _ in range(80))


class Order:
    def __init__(self, order_id: int, customer: str, total: float, items: List[dict]) -> None:
        self.order_id = order_id
        self.customer = customer
        self.total = total
        self.items = items

    def summary(self) -> dict:
        return {"id": self.order_id, "customer": self.customer, "total": round(self.total, 2)}


_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+\.[\w.]+$")
_SKU = re.compile(r"([A-Z]{3})-(\d{4})")
_REQUEST = json.dumps(
    {
        "orders": [
            {
                "id": i,
                "customer": f"user{i}@example.com",
                "items": [
                    {"sku": f"ABC-{1000 + j}", "price": j * 1.5, "qty": j % 3 + 1} for j in range(8)
                ],
            }
            for i in range(40)
        ]
    }
)


def handle_request(body: str) -> str:
    data = json.loads(body)
    orders = []
    for raw in data["orders"]:
        if not _EMAIL.match(raw["customer"]):
            continue
        items = [item for item in raw["items"] if _SKU.match(item["sku"])]
        total = sum(item["price"] * item["qty"] for item in items)
        orders.append(Order(raw["id"], raw["customer"], total, items))
    orders.sort(key=lambda order: (-order.total, order.order_id))
    return json.dumps({"top": [order.summary() for order in orders[:10]], "count": len(orders)})


def web_workload() -> int:
    return sum(len(handle_request(_REQUEST)) for _ in range(900))


WORKLOADS: Dict[str, Callable[[], int]] = {"fib": fib_workload, "web": web_workload}

# -- cases: each returns (workload seconds, start-to-bytes seconds) ----------------------------


CPU_SECONDS: Dict[str, List[float]] = {}


def timed(work: Callable[[], int]) -> float:
    """The workload's wall time; its process CPU time (all threads) goes to ``CPU_SECONDS``."""
    began, cpu = time.perf_counter(), time.process_time()
    work()
    CPU_SECONDS.setdefault(_CURRENT[0], []).append(time.process_time() - cpu)
    return time.perf_counter() - began


_CURRENT = [""]  # the case being run, for ``timed``


def case_none(work: Callable[[], int]) -> Tuple[float, float]:
    seconds = timed(work)
    return seconds, seconds


def case_profiler(profiler: CpuProfiler, work: Callable[[], int]) -> Tuple[float, float]:
    began = time.perf_counter()
    profiler.start()
    seconds = timed(work)
    profiler.stop()
    return seconds, time.perf_counter() - began


SAMPLER_SHARES: List[float] = []


def case_sampling(work: Callable[[], int]) -> Tuple[float, float]:
    profiler = CpuProfiler()
    result = case_profiler(profiler, work)
    cpu = float(profiler.end_attributes()["profiling.cpu.sampler_cpu_seconds"])
    SAMPLER_SHARES.append(cpu / result[0])
    return result


def case_plain_thread(work: Callable[[], int]) -> Tuple[float, float]:
    """The floor of any sampler in Python: a thread reading sys._current_frames() at 100 Hz."""
    stop = _thread.allocate_lock()
    stop.acquire()

    def wake() -> None:
        # On a schedule of deadlines, as the sampler: a plain 10 ms wait would also wait
        # for the GIL each time and read the frames only about 65 times a second.
        deadline = time.monotonic()
        while True:
            now = time.monotonic()
            deadline = deadline + 0.01 if deadline + 0.01 > now else now + 0.01
            if stop.acquire(timeout=deadline - now):
                break
            sys._current_frames()

    thread = threading.Thread(target=wake, daemon=True)
    began = time.perf_counter()
    thread.start()
    seconds = timed(work)
    stop.release()
    thread.join()
    return seconds, time.perf_counter() - began


def case_bare_yappi(work: Callable[[], int]) -> Tuple[float, float]:
    yappi.clear_stats()
    yappi.set_clock_type("wall")
    began = time.perf_counter()
    yappi.start(builtins=True)
    seconds = timed(work)
    yappi.stop()
    yappi.get_func_stats()
    total = time.perf_counter() - began
    yappi.clear_stats()
    return seconds, total


def case_cprofile(work: Callable[[], int]) -> Tuple[float, float]:
    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.enable()
    seconds = timed(work)
    profile.disable()
    profile.create_stats()
    return seconds, time.perf_counter() - began


def case_pyinstrument(work: Callable[[], int]) -> Tuple[float, float]:
    from pyinstrument import Profiler

    profiler = Profiler()
    began = time.perf_counter()
    profiler.start()
    seconds = timed(work)
    profiler.stop()
    profiler.last_session  # noqa: B018 - the session is built at stop
    return seconds, time.perf_counter() - began


def cases() -> Dict[str, Callable[[Callable[[], int]], Tuple[float, float]]]:
    found: Dict[str, Callable[[Callable[[], int]], Tuple[float, float]]] = {
        "none": case_none,
        "plain-100Hz": case_plain_thread,
        "sampling": case_sampling,
        "yappi-engine": lambda work: case_profiler(CpuProfiler(engine="yappi"), work),
        "bare-yappi": case_bare_yappi,
        "cProfile": case_cprofile,
    }
    try:
        import pyinstrument  # noqa: F401

        found["pyinstrument"] = case_pyinstrument
    except ImportError:
        print("pyinstrument is not installed (pip install -e '.[bench]'): left out\n")
    return found


def compare(workload: str, rounds: int) -> None:
    work = WORKLOADS[workload]
    runs = cases()
    names = list(runs)
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            _CURRENT[0] = name
            times[name].append(runs[name](work))
    base = [seconds for seconds, _ in times["none"]]
    none = statistics.median(base)
    print(f"workload {workload}: {rounds} interleaved rounds; none median {none:.3f} s")
    print(
        f"{'case':<14}{'median s':>10}{'ratio':>9}{'min-max ratio':>18}{'start to bytes':>16}"
        f"{'CPU ratio':>11}"
    )
    base_cpu = CPU_SECONDS["none"]
    for name in names:
        ratios = [s / b for (s, _), b in zip(times[name], base, strict=True)]
        e2e = [t / b for (_, t), b in zip(times[name], base, strict=True)]
        cpu = [c / b for c, b in zip(CPU_SECONDS[name], base_cpu, strict=True)]
        median_s = statistics.median(s for s, _ in times[name])
        print(
            f"{name:<14}{median_s:>10.3f}{statistics.median(ratios):>8.3f}x"
            f"{min(ratios):>9.3f}-{max(ratios):.3f}x{statistics.median(e2e):>15.3f}x"
            f"{statistics.median(cpu):>10.3f}x"
        )
    CPU_SECONDS.clear()
    print(
        f"sampler's own CPU during the sampling case: median "
        f"{statistics.median(SAMPLER_SHARES):.2%} of the workload's time"
    )
    SAMPLER_SHARES.clear()
    yappi_engine = [s for s, _ in times["yappi-engine"]]
    bare = [s for s, _ in times["bare-yappi"]]
    ratio = statistics.median(a / b for a, b in zip(yappi_engine, bare, strict=True))
    print(
        f"yappi engine / bare yappi (workload, median of rounds): {ratio:.3f}x (target <= 1.05x)\n"
    )


# -- the sampler's own CPU with 20 threads -------------------------------------------------------


def _deep_wait(depth: int, inbox: queue.Queue) -> None:
    if depth:
        _deep_wait(depth - 1, inbox)
    else:
        inbox.get()


def sampler_cpu(threads: int, busy: bool, seconds: float, rounds: int) -> None:
    """The default sampler against one that never lengthens its step while the application
    is still (``pace.MAX_STRETCH = 1``: a sample every interval), in alternate windows."""
    stop = threading.Event()
    inbox: queue.Queue = queue.Queue()

    def busy_loop() -> None:
        while not stop.is_set():
            handle_request(_REQUEST)

    workers = [
        threading.Thread(target=busy_loop if busy else _deep_wait, args=() if busy else (15, inbox))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    shares: Dict[int, List[float]] = {pace.MAX_STRETCH: [], 1: []}
    counts: Dict[int, List[int]] = {stretch: [] for stretch in shares}
    stops = []
    try:
        for _ in range(rounds):
            for stretch in shares:
                pace.MAX_STRETCH, default = stretch, pace.MAX_STRETCH
                try:
                    profiler = CpuProfiler()
                    profiler.start()
                    time.sleep(seconds)
                    began = time.perf_counter()
                    data = profiler.stop()
                finally:
                    pace.MAX_STRETCH = default
                stops.append(time.perf_counter() - began)
                attributes = profiler.end_attributes()
                cpu = float(attributes["profiling.cpu.sampler_cpu_seconds"])
                shares[stretch].append(cpu / seconds)
                counts[stretch].append(int(attributes["profiling.cpu.samples"]))
    finally:
        stop.set()
        for _ in workers:
            inbox.put(None)
        for worker in workers:
            worker.join()
    kind = "busy (web workload)" if busy else "waiting 15 calls deep"
    for stretch, values in shares.items():
        how = "step always 1 interval"
        if stretch > 1:
            how = f"step up to {stretch} intervals when still"
        print(
            f"sampler CPU, {threads} threads {kind}, 100 Hz, {how}: median "
            f"{statistics.median(values):.2%} of a core "
            f"(rounds: {', '.join(f'{s:.2%}' for s in values)}); "
            f"samples per {seconds:g} s window, median {statistics.median(counts[stretch]):.0f}"
        )
    print(
        f"  stop to .cpuprofile bytes {statistics.median(stops) * 1000:.0f} ms (median), "
        f"{len(data) / 1024:.0f} KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", choices=sorted(WORKLOADS))
    parser.add_argument("--threads-only", action="store_true")
    parser.add_argument("--thread-rounds", type=int, default=5)
    args = parser.parse_args()
    from importlib.metadata import version

    print(f"Python {sys.version.split()[0]}, yappi {version('yappi')}\n")
    if not args.threads_only:
        for workload in [args.only] if args.only else list(WORKLOADS):
            compare(workload, args.rounds)
    sampler_cpu(20, busy=False, seconds=5.0, rounds=args.thread_rounds)
    sampler_cpu(20, busy=True, seconds=5.0, rounds=args.thread_rounds)


if __name__ == "__main__":
    main()
