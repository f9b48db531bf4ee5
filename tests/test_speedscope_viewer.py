"""speedscope itself reads the profiles: its own web app, in headless Chromium.

speedscope's importer runs in the page (``#localProfilePath=``, as its command
line opens a file) and its sandwich view lists each function's total and
self time; the test reads that table from the rendered page and compares it
with what the program measured with ``time.perf_counter``. Tolerance: ±15 %.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from pathlib import Path
from typing import Dict, Tuple

import pytest
import sampling_programs as programs
from browser import dump_dom
from sampling_programs import MEASURED

from otel_profiling.profilers import CpuProfiler

TOLERANCE = 0.15
_UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0}
_TIME = r"([\d.]+)(ns|µs|us|ms|s|min) \([^)]*\)"
# a sandwich row: <tr><td>total (x%)...</td><td>self (y%)...</td><td><span></span>name</td></tr>
_ROW = re.compile(
    rf"<tr[^>]*><td[^>]*>{_TIME}.*?</td><td[^>]*>{_TIME}.*?</td>"
    r"<td[^>]*>(?:<span[^>]*></span>)?([^<]*)</td></tr>",
    re.S,
)


def speedscope_sandwich(
    chromium: str, package: Path, profile: bytes, tmp_path: Path
) -> Tuple[str, Dict[str, Tuple[float, float]]]:
    """The page title and ``{function: (total s, self s)}`` as speedscope shows them."""
    loader = tmp_path / "profile.js"  # what `speedscope <file>` writes and opens
    encoded = base64.b64encode(profile).decode()
    loader.write_text(f"speedscope.loadFileFromBase64('profile.speedscope.json', '{encoded}')")
    page = package / "dist" / "release" / "index.html"
    dom = dump_dom(
        chromium,
        page,
        tmp_path / "chromium",
        f"#localProfilePath={loader}&view=sandwich",
        "--virtual-time-budget=20000",
    )
    title = re.search(r"<title>([^<]*)</title>", dom)
    rows: Dict[str, Tuple[float, float]] = {}
    for total, total_unit, own, own_unit, name in _ROW.findall(dom):
        rows[html.unescape(name).strip()] = (
            float(total) * _UNITS[total_unit],
            float(own) * _UNITS[own_unit],
        )
    return (title.group(1) if title else ""), rows


@pytest.mark.parametrize("engine", ["sampling", "yappi"])
def test_speedscope_shows_each_phase_the_time_the_program_measured(
    chromium: str, speedscope_package: Path, tmp_path: Path, engine: str
) -> None:
    MEASURED.clear()
    profiler = CpuProfiler("speedscope", engine=engine)
    profiler.start()
    began = time.perf_counter()
    programs.two_phases()
    elapsed = time.perf_counter() - began
    data = profiler.stop()
    json.loads(data)  # a JSON document, as speedscope's importer expects
    title, rows = speedscope_sandwich(chromium, speedscope_package, data, tmp_path)
    assert title.endswith("- speedscope") and "Error" not in title, title
    assert rows, f"speedscope showed no table for {engine}"
    for phase in ("parse_phase", "compute_phase"):
        total, _ = rows[phase]
        assert abs(total - MEASURED[phase]) <= TOLERANCE * MEASURED[phase], (phase, rows)
    both = MEASURED["parse_phase"] + MEASURED["compute_phase"]
    assert abs(rows["spin"][0] - both) <= TOLERANCE * both, rows  # where both phases spin
    assert rows["two_phases"][0] <= elapsed * (1 + TOLERANCE), (rows["two_phases"], elapsed)
    library = [name for name in rows if name.startswith(("otel-profiling-", "CpuProfiler"))]
    assert not library, library
