"""``view``: the HTML flame graph opened in headless Chromium, and the static SVG."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from browser import CHROMIUM_FLAGS
from clitools import cli
from support import APPS, child_env

WORKLOAD_NAMES = {"run_workload", "handle_request", "fibonacci", "checksum_lines"}


@pytest.fixture(scope="module")
def workload_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CPU profile of the example workload, taken by `otel-profiling run`."""
    out = tmp_path_factory.mktemp("profiles")
    app = APPS / "cli_workload.py"
    result = cli("run", "--cpu", "--url", f"file://{out}", "--", sys.executable, str(app), "8")
    assert result.returncode == 0, result.stderr
    files = list(out.glob("CPU_PROFILE-*.cpuprofile"))
    assert len(files) == 1, files
    return files[0]


def test_html_is_self_contained(workload_profile: Path, tmp_path: Path) -> None:
    target = tmp_path / "cpu.html"
    result = cli("view", str(workload_profile), "-o", str(target), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["unit"] == "seconds" and info["total"] > 0
    page = target.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"https?://", page), "the page must reference no network resource"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    data = json.loads(re.search(r'id="profile-data">(.*?)</script>', page, re.S).group(1))
    assert set(data["names"]) >= WORKLOAD_NAMES
    assert data["unit"] == "seconds"
    assert data["top"][0][0] in {"fibonacci", "checksum_lines", "hash"}


def test_html_renders_flame_graph_in_chromium(
    chromium: str, workload_profile: Path, tmp_path: Path
) -> None:
    target = tmp_path / "cpu.html"
    assert cli("view", str(workload_profile), "-o", str(target)).returncode == 0
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900"]
    shot = tmp_path / "flame.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", target.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 20_000  # a drawn page, not a blank one
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", target.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    # the script ran (the CSP hash matched) and drew frames labelled with the workload's functions
    rendered = re.search(r'data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) > 5, dom[:500]
    frames = set(re.findall(r'<div class="f[^"]*"[^>]*>([^<]+)</div>', dom))
    assert frames >= WORKLOAD_NAMES, frames
    rows = re.findall(r'<tr class="row" data-name="([^"]+)"', dom)
    assert "fibonacci" in rows


def test_heap_profile_is_shown_in_bytes(tmp_path: Path) -> None:
    doc = {
        "head": {
            "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1},
            "selfSize": 0,
            "id": 1,
            "children": [
                {
                    "callFrame": {
                        "functionName": "build_cache",
                        "url": "/app/c.py",
                        "lineNumber": 3,
                    },
                    "selfSize": 3 << 20,
                    "id": 2,
                    "children": [],
                }
            ],
        },
        "samples": [],
    }
    source = tmp_path / "HEAP_PROFILE-2026-11-24T10:00:00.000Z.heapprofile"
    source.write_text(json.dumps(doc))
    result = cli("view", str(source), "--json", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["unit"] == "bytes" and info["total_text"] == "3.0 MiB"
    page = (tmp_path / (source.name + ".html")).read_text()
    assert "memory (bytes)" in page and "build_cache" in page

    svg = cli("view", str(source), "--svg", "-o", "-")
    assert svg.returncode == 0
    root = ET.fromstring(svg.stdout)
    texts = [el.text for el in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "build_cache" in texts
    titles = [el.text for el in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any("3.0 MiB" in t for t in titles)


def test_svg_of_cpu_profile(workload_profile: Path, tmp_path: Path) -> None:
    target = tmp_path / "cpu.svg"
    assert cli("view", str(workload_profile), "--svg", "-o", str(target)).returncode == 0
    root = ET.parse(target).getroot()
    assert len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) > 5
    labels = {el.text for el in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"run_workload", "handle_request"} <= labels


def test_view_from_s3_url(
    s3_endpoint: str, bucket: str, workload_profile: Path, tmp_path: Path
) -> None:
    from support import s3_options

    from otel_profiling.exporters import FsspecProfileExporter

    fs = FsspecProfileExporter(f"s3://{bucket}", s3_options(s3_endpoint)).fs
    fs.mkdir(bucket)
    fs.pipe_file(f"{bucket}/{workload_profile.name}", workload_profile.read_bytes())
    env = child_env(AWS_ENDPOINT_URL=s3_endpoint)
    result = cli(
        "view", f"s3://{bucket}/{workload_profile.name}", "-o", str(tmp_path / "s3.html"), env=env
    )
    assert result.returncode == 0, result.stderr
    assert "fibonacci" in (tmp_path / "s3.html").read_text()


def test_search_and_zoom_in_chromium(chromium: str, workload_profile: Path, tmp_path: Path) -> None:
    target = tmp_path / "cpu.html"
    assert cli("view", str(workload_profile), "-o", str(target)).returncode == 0
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900"]

    def dom(fragment: str) -> str:
        return subprocess.run(
            [chromium, *flags, "--dump-dom", target.as_uri() + fragment],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    searched = dom("#q=fibonacci")
    matched = re.findall(r'<div class="f match"[^>]*>([^<]*)</div>', searched)
    assert matched and set(matched) <= {"fibonacci", ""}, matched
    assert re.search(r'<span id="match">matched \d+ frames?: .* \(\d+\.\d+%\)</span>', searched)
    dimmed = re.findall(r'<div class="f dim"[^>]*>([^<]*)</div>', searched)
    assert "run_workload" in dimmed

    zoomed = dom("#zoom=checksum_lines")
    # ancestors of the zoomed frame are drawn faded above it; its callee fills the width below
    ancestors = re.findall(r'<div class="f anc"[^>]*>([^<]*)</div>', zoomed)
    assert "handle_request" in ancestors and "checksum_lines" not in ancestors
    full = re.search(
        r'<div class="f"[^>]*style="left: 0px; width: (\d+)[^>]*>checksum_lines<', zoomed
    )
    assert full and int(full.group(1)) > 1000, "the zoomed frame spans the chart"


def test_format_list_follows_the_error_kind_not_its_wording(tmp_path: Path) -> None:
    """The readable formats are added to an error unless it is the one that lists them
    already; a message that merely quotes the file's content (here a speedscope profile
    type spelling out the list) still gets them."""
    from otel_profiling.formats.registry import readable_formats

    known = ", ".join(readable_formats())
    odd = tmp_path / "odd.speedscope.json"
    odd.write_text(
        json.dumps(
            {
                "$schema": "https://www.speedscope.app/file-format-schema.json",
                "shared": {"frames": []},
                "profiles": [{"type": known}],
            }
        )
    )
    result = cli("view", str(odd), cwd=str(tmp_path))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "unknown speedscope profile type" in result.stderr
    assert result.stderr.rstrip().endswith(f"(pass --from FORMAT if known: {known})")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00 no format reads this")
    unknown = cli("view", str(junk), cwd=str(tmp_path))
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert f"expected one of {known} (pass --from FORMAT if known)" in unknown.stderr
