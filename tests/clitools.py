"""Helpers for the command-line tests: run the real command, make profiles to work on."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from conftest import child_env
from opentelemetry.sdk.resources import Resource
from viewers import pprof_message_class

from otel_profiling import Profile, ProfileKind
from otel_profiling.formats import default_format
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


def make_profile(
    kind: ProfileKind,
    data: bytes,
    start: datetime,
    service: str = "checkout",
    duration: timedelta = timedelta(seconds=2),
) -> Profile:
    profile = Profile(
        kind,
        default_format(kind),
        resource=Resource.create({"service.name": service}),
        start_time=start,
    )
    profile.end(data, end_time=start + duration)
    return profile


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# -- pprof through the protobuf library (independent of the project's decoder) -----------------


def build_pprof(
    stacks: Sequence[Tuple[Sequence[Tuple[str, str, int]], int, int]],
    sample_types: Sequence[Tuple[str, str]] = (("samples", "count"), ("cpu", "nanoseconds")),
    time_nanos: int = 0,
) -> bytes:
    """A gzipped pprof: each stack (root first frames of (name, file, line)) with [count, value]."""
    profile = pprof_message_class()()
    strings: List[str] = [""]

    def s(text: str) -> int:
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    for type_, unit in sample_types:
        profile.sample_type.add(type=s(type_), unit=s(unit))
    locations: Dict[Tuple[str, str, int], int] = {}
    for frames, count, value in stacks:
        ids = []
        for frame in frames:
            if frame not in locations:
                fid = len(locations) + 1
                profile.function.add(id=fid, name=s(frame[0]), filename=s(frame[1]))
                profile.location.add(id=fid).line.add(function_id=fid, line=frame[2])
                locations[frame] = fid
            ids.append(locations[frame])
        profile.sample.add(location_id=list(reversed(ids)), value=[count, value])
    profile.string_table.extend(strings)
    profile.time_nanos = time_nanos
    return gzip.compress(profile.SerializeToString())


def parse_pprof(data: bytes) -> Dict[str, Any]:
    """Totals and per-function self values of a pprof, read with the protobuf library."""
    profile = pprof_message_class()()
    profile.ParseFromString(gzip.decompress(data))
    strings = list(profile.string_table)
    assert strings[0] == ""
    names = {f.id: strings[f.name] for f in profile.function}
    leaf_of = {loc.id: names[loc.line[0].function_id] for loc in profile.location}
    types = [(strings[t.type], strings[t.unit]) for t in profile.sample_type]
    self_by: Dict[str, int] = {}
    totals = [0] * len(types)
    for sample in profile.sample:
        for i, v in enumerate(sample.value):
            totals[i] += v
        leaf = leaf_of[sample.location_id[0]]
        self_by[leaf] = self_by.get(leaf, 0) + sample.value[-1]
    return {"types": types, "totals": totals, "self": self_by}


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
