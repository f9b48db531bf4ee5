"""pprof through the ``protobuf`` package against the hand-written wire codec it replaced.

A call tree touching 10,000 distinct functions (each node a sample, as the
yappi and heap profilers write it), encoded and decoded by both codecs in
interleaved rounds; medians are printed side by side. The hand-written codec
is ``pprof_handwritten.py`` next to this file.

    python benchmarks/pprof_codec.py [--functions 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pprof_handwritten  # noqa: E402

from otel_profiling.formats import pprof  # noqa: E402
from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root  # noqa: E402

ENCODE_OPTIONS = {
    "sample_types": [("samples", "count"), ("wall", "nanoseconds")],
    "value_scale": 1e9,
    "period_type": ("wall", "nanoseconds"),
    "period": 1,
    "time_nanos": 1_700_000_000_000_000_000,
    "duration_nanos": 10_000_000_000,
}


def make_tree(functions: int, seed: int = 1) -> CallNode:
    """Stacks 4 to 24 deep over ``functions`` functions; every function appears."""
    rng = random.Random(seed)
    frames = [Frame(f"f{i}", f"/app/module{i % 300}.py", 1 + i % 500) for i in range(functions)]
    root = new_root()
    for index in range(functions * 3):
        depth = rng.randint(4, 24)
        stack = [frames[rng.randrange(functions)] for _ in range(depth - 1)]
        stack.append(frames[index % functions])
        add_stack(root, stack, rng.uniform(1e-4, 1e-2), rng.randint(1, 20))
    return root


def median_seconds(task: Callable[[], object], samples: List[float]) -> None:
    began = time.perf_counter()
    task()
    samples.append(time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    tree = make_tree(args.functions)
    nodes = sum(1 for _ in tree.walk()) - 1
    data_pb = pprof.encode_pprof(tree, **ENCODE_OPTIONS)  # type: ignore[arg-type]
    data_hand = pprof_handwritten.encode_pprof(tree, **ENCODE_OPTIONS)  # type: ignore[arg-type]
    # both read both: the codecs agree on the totals
    total = tree.total_value()
    for data in (data_pb, data_hand):
        assert abs(pprof.decode_pprof(data).total - total) < 1e-6 * nodes
        assert abs(pprof_handwritten.decode_pprof(data)[0].total_value() - total) < 1e-6 * nodes
    times: Dict[str, List[float]] = {
        "encode protobuf": [],
        "encode hand-written": [],
        "decode protobuf": [],
        "decode hand-written": [],
    }
    for _ in range(args.rounds):
        median_seconds(lambda: pprof.encode_pprof(tree, **ENCODE_OPTIONS), times["encode protobuf"])  # type: ignore[arg-type]
        median_seconds(
            lambda: pprof_handwritten.encode_pprof(tree, **ENCODE_OPTIONS),  # type: ignore[arg-type]
            times["encode hand-written"],
        )
        median_seconds(lambda: pprof.decode_pprof(data_pb), times["decode protobuf"])
        median_seconds(
            lambda: pprof_handwritten.decode_pprof(data_pb), times["decode hand-written"]
        )
    print(
        f"{args.functions} functions, {nodes} nodes, {len(data_pb)} bytes gzipped "
        f"(hand-written: {len(data_hand)}), {args.rounds} interleaved rounds, medians:"
    )
    for name, samples in times.items():
        print(f"  {name:22s} {statistics.median(samples) * 1e3:8.1f} ms")
    for step in ("encode", "decode"):
        ratio = statistics.median(times[f"{step} protobuf"]) / statistics.median(
            times[f"{step} hand-written"]
        )
        print(f"  {step}: hand-written is {ratio:.2f}x as fast as protobuf")


if __name__ == "__main__":
    main()
