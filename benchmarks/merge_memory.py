"""Peak memory of ``otel-profiling merge`` over many profiles, against loading them all first.

Writes N CPU profiles (default 200) whose stacks are drawn from one shared pool,
as a fleet of containers running the same code would produce, then runs:

* ``baseline-startup``: ``otel-profiling merge`` of a one-stack profile: the
  interpreter and imports, subtracted from the others;
* ``merge``: the real command over all N profiles (streaming), writing
  ``.cpuprofile`` and, separately, speedscope;
* ``load-all``: the same merge done naively, every input read and parsed
  before merging, for comparison.

Peak memory is each child's maximum RSS (``wait4``). The target is
``merge`` peak - startup <= 2 x merged output size + 50 MB.

    python benchmarks/merge_memory.py [--profiles 200] [--stacks 1500] [--pool 6000]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_profiling.formats.calltree import Frame, add_stack, new_root  # noqa: E402
from otel_profiling.formats.cpuprofile import encode_cpuprofile  # noqa: E402

NAIVE = """
import sys
from pathlib import Path
from otel_profiling.formats.calltree import new_root
from otel_profiling.formats.merge import merge_into
from otel_profiling.formats import read_profile
from otel_profiling.formats.cpuprofile import encode_cpuprofile
paths = sorted(Path(sys.argv[1]).glob("*.cpuprofile"))
trees = [read_profile(p.read_bytes(), p.name) for p in paths]
root = new_root()
for tree in trees:
    merge_into(root, tree.root)
Path(sys.argv[2]).write_bytes(encode_cpuprofile(root, 0))
"""


def make_pool(size: int, rng: random.Random) -> List[List[Frame]]:
    modules = [f"/srv/app/{name}.py" for name in ("api", "db", "cache", "render", "auth", "queue")]
    functions = [Frame(f"func_{i}", rng.choice(modules), rng.randint(1, 400)) for i in range(400)]
    return [[rng.choice(functions) for _ in range(rng.randint(3, 14))] for _ in range(size)]


def write_profiles(directory: Path, count: int, stacks: int, pool_size: int) -> Tuple[int, float]:
    rng = random.Random(1)
    pool = make_pool(pool_size, rng)
    total = 0
    start = time.time()
    for index in range(count):
        root = new_root()
        for stack in rng.sample(pool, stacks):
            add_stack(root, stack, rng.randint(1, 2000) / 1e6)
        data = encode_cpuprofile(root, start_us=int((start + index) * 1e6))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + index))
        (directory / f"CPU_PROFILE-{stamp}.{index % 1000:03d}Z.cpuprofile").write_bytes(data)
        total += len(data)
    return total, time.time() - start


def measure(args: List[str]) -> Tuple[int, float]:
    """Peak RSS (bytes) and wall time of a child process."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{args[:4]} failed with exit code {proc.returncode}")
    return usage.ru_maxrss * 1024, time.monotonic() - started


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=200)
    parser.add_argument("--stacks", type=int, default=1500, help="stacks per profile")
    parser.add_argument("--pool", type=int, default=6000, help="distinct stacks in the fleet")
    parser.add_argument("--write-to", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.write_to:
        write_profiles(Path(opts.write_to), opts.profiles, opts.stacks, opts.pool)
        return
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp, "in")
        inputs.mkdir()
        # written by a child process, so that this one stays small: a child's peak RSS
        # counts the parent's pages it was forked with
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--write-to",
                str(inputs),
                "--profiles",
                str(opts.profiles),
                "--stacks",
                str(opts.stacks),
                "--pool",
                str(opts.pool),
            ],
            check=True,
        )
        seconds = time.monotonic() - started
        total = sum(p.stat().st_size for p in inputs.iterdir())
        print(
            f"inputs: {opts.profiles} profiles, {total / mib:.1f} MiB in all "
            f"({seconds:.1f} s to write)"
        )
        one = Path(tmp, "one")
        one.mkdir()
        tiny = new_root()
        add_stack(tiny, [Frame("main", "app.py", 1)], 0.001)
        (one / "CPU_PROFILE-2026-01-01T00:00:00.000Z.cpuprofile").write_bytes(
            encode_cpuprofile(tiny, 0)
        )
        cli = [sys.executable, "-m", "otel_profiling", "merge"]
        startup, _ = measure([*cli, str(one), "-o", str(Path(tmp, "one.cpuprofile"))])
        print(f"baseline-startup (merge of a one-stack profile): peak RSS {startup / mib:.0f} MiB")
        for name in ("merged.cpuprofile", "merged.speedscope.json"):
            out = Path(tmp, name)
            peak, wall = measure([*cli, f"file://{inputs}", "--kind", "cpu", "-o", str(out)])
            size = out.stat().st_size
            budget = 2 * size + 50 * mib
            verdict = "within" if peak - startup <= budget else "OVER"
            print(
                f"merge -o {name}: output {size / mib:.1f} MiB, peak RSS {peak / mib:.0f} MiB, "
                f"above startup {(peak - startup) / mib:.0f} MiB, {wall:.1f} s; "
                f"target 2 x output + 50 MiB = {budget / mib:.0f} MiB: {verdict}"
            )
        naive = [sys.executable, "-c", NAIVE, str(inputs), str(Path(tmp, "naive.cpuprofile"))]
        naive_peak, naive_wall = measure(naive)
        print(
            f"load-all (naive) -o merged.cpuprofile: peak RSS {naive_peak / mib:.0f} MiB, "
            f"above startup {(naive_peak - startup) / mib:.0f} MiB, {naive_wall:.1f} s"
        )


if __name__ == "__main__":
    main()
