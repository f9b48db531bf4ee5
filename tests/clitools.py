"""Helpers for the command-line tests: run the real command, make profiles to work on."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timezone
from typing import Dict, Optional

from support import child_env

from otel_profiling.formats.calltree import Frame, add_stack, new_root
from otel_profiling.formats.cpuprofile import encode_cpuprofile

WORDS = ["parse", "render", "query", "encode", "handle", "load", "store", "hash", "sort", "send"]


def cli(
    *args: str,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[str] = None,
    timeout: float = 120,
    stdin: Optional[str] = None,
) -> subprocess.CompletedProcess:
    """``python -m otel_profiling ARGS`` in a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "otel_profiling", *args],
        env=env or child_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def random_cpuprofile(seed: int, stacks: int = 60, start_us: int = 0) -> bytes:
    """A ``.cpuprofile`` with random stacks over a fixed vocabulary of function names."""
    rng = random.Random(seed)
    root = new_root()
    for _ in range(stacks):
        depth = rng.randint(1, 6)
        frames = [
            Frame(
                f"{rng.choice(WORDS)}_{rng.randint(0, 3)}",
                f"/srv/app/{rng.choice(WORDS)}.py",
                rng.randint(1, 99),
            )
            for _ in range(depth)
        ]
        add_stack(root, frames, rng.randint(1, 5000) / 1e6)
    return encode_cpuprofile(root, start_us=start_us)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def speedscope_totals(data: bytes) -> Dict[str, float]:
    """Self weight per frame name of a speedscope file, checked as speedscope loads it."""
    doc = json.loads(data)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    out: Dict[str, float] = {}
    for profile in doc["profiles"]:
        assert profile["type"] == "sampled"
        assert len(profile["samples"]) == len(profile["weights"])
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            assert all(0 <= i < len(frames) for i in stack)
            name = frames[stack[-1]]["name"]
            out[name] = out.get(name, 0.0) + weight
    return out
