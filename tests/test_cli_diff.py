"""``diff``: two versions of a program, really profiled into moto's S3, compared.

Version 1.0 spends its time in ``common()`` 50 %, ``old()`` 40 %, ``helper()``
10 %; version 2.0 in ``common()`` 30 %, ``new()`` 40 %, ``helper()`` 30 %. The
programs time each call themselves; the diff's shares must match those times.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import fsspec
import pytest
from browser import RequestRecorder, dump_dom
from clitools import cli
from support import APPS, child_env

SHARE_TOLERANCE = 0.03  # absolute, in shares of the side's total (3 points)
FUNCTIONS = ("common", "old", "new", "helper")
PROCESSES_PER_VERSION = 2
WINDOWS_PER_PROCESS = 2


def _credentials() -> Dict[str, str]:
    """What the autouse fixture sets per test, for this module-wide fixture's children."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return {}
    return {"AWS_ACCESS_KEY_ID": "testing-access-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


def _storage_options(endpoint: str) -> Dict[str, Any]:
    options: Dict[str, Any] = {
        "endpoint_url": endpoint,
        "config_kwargs": {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        },
    }
    credentials = _credentials()
    if credentials:
        options.update(
            key=credentials["AWS_ACCESS_KEY_ID"], secret=credentials["AWS_SECRET_ACCESS_KEY"]
        )
    return options


@pytest.fixture(scope="module")
def versions(s3_endpoint: str) -> Iterator[Tuple[str, Dict[str, Dict[str, float]], Dict[str, str]]]:
    """Both versions profiled (two processes each, one after the other) into ``shop/{version}``.

    One at a time, so that each has a core: four at once on two cores, with other jobs
    on the machine, delayed the sampler by tens of milliseconds at a time, and each late
    sample moved that much time from one function to the next one (a 3.3-point error).

    Yields the bucket, the true shares per version (time each function took
    over the time profiled, summed over the processes) and the CLI's env.
    """
    env = child_env(**_credentials(), AWS_DEFAULT_REGION="us-east-1")
    bucket = f"diff-{os.getpid()}"
    url = f"s3://{bucket}/fleet/{{service.name}}/{{service.version}}"
    options = _storage_options(s3_endpoint)
    fsspec.filesystem("s3", **options).mkdir(bucket)
    spent: Dict[str, Dict[str, float]] = {"1.0": {}, "2.0": {}}
    profiled = {"1.0": 0.0, "2.0": 0.0}
    runs = [("1.0", "blue"), ("2.0", "green")] * PROCESSES_PER_VERSION
    for version, colour in runs:
        command = [
            sys.executable,
            str(APPS / "fleet_versions.py"),
            version,
            url,
            json.dumps(options),
            str(WINDOWS_PER_PROCESS),
            colour,
        ]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, timeout=180)
        assert done.returncode == 0
        report = json.loads(done.stdout.strip().splitlines()[-1])
        profiled[version] += report["profiled"]
        for name, seconds in report["spent"].items():
            spent[version][name] = spent[version].get(name, 0.0) + seconds
    truth = {
        version: {name: spent[version].get(name, 0.0) / profiled[version] for name in FUNCTIONS}
        for version in spent
    }
    yield bucket, truth, child_env(**_credentials(), AWS_ENDPOINT_URL=s3_endpoint)


def diff_json(*args: str, env: Dict[str, str]) -> Dict[str, Any]:
    result = cli("diff", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_name(doc: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {f["name"]: f for f in doc["functions"] if f["file"].endswith("fleet_versions.py")}


def test_json_shares_match_what_the_programs_measured(versions) -> None:  # type: ignore[no-untyped-def]
    bucket, truth, env = versions
    doc = diff_json(f"s3://{bucket}/fleet/shop/1.0", f"s3://{bucket}/fleet/shop/2.0", env=env)
    assert set(doc) == {"before", "after", "functions"}
    assert all(set(f) == {"name", "file", "before", "after", "delta"} for f in doc["functions"]), (
        doc["functions"][:3]
    )
    for side in ("before", "after"):
        assert doc[side]["profiles"] == PROCESSES_PER_VERSION * WINDOWS_PER_PROCESS
        assert doc[side]["unit"] == "seconds" and doc[side]["kind"] == "CPU_PROFILE"
        assert doc[side]["failed"] == []
    functions = by_name(doc)
    for name in FUNCTIONS:
        row = functions.get(name, {"before": 0.0, "after": 0.0, "delta": 0.0})
        assert row["before"] == pytest.approx(truth["1.0"][name], abs=SHARE_TOLERANCE), name
        assert row["after"] == pytest.approx(truth["2.0"][name], abs=SHARE_TOLERANCE), name
        assert row["delta"] == pytest.approx(row["after"] - row["before"], abs=1e-12)
    # the signs: old gone, new arrived, helper grew, common shrank
    assert functions["old"]["after"] == 0 and functions["old"]["delta"] < -0.3
    assert functions["new"]["before"] == 0 and functions["new"]["delta"] > 0.3
    assert functions["helper"]["delta"] > 0.1
    assert functions["common"]["delta"] < -0.1
    # sorted by the size of the change, either way; old and new (±0.4) lead
    deltas = [abs(f["delta"]) for f in doc["functions"]]
    assert deltas == sorted(deltas, reverse=True)
    assert {doc["functions"][0]["name"], doc["functions"][1]["name"]} == {"old", "new"}


def test_sides_picked_by_attribute_give_the_same_diff(versions) -> None:  # type: ignore[no-untyped-def]
    bucket, _, env = versions
    by_url = diff_json(f"s3://{bucket}/fleet/shop/1.0", f"s3://{bucket}/fleet/shop/2.0", env=env)
    # v1's processes tagged their profiles deploy.colour=blue, v2's green (attr-* metadata)
    by_where = diff_json(
        f"s3://{bucket}/fleet",
        f"s3://{bucket}/fleet",
        "--before-where",
        "deploy.colour=blue",
        "--after-where",
        "deploy.colour=green",
        "--service",
        "shop",
        env=env,
    )
    assert by_where["functions"] == by_url["functions"]
    listed = cli("ls", f"s3://{bucket}/fleet", "--where", "deploy.colour=green", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    keys = [entry["key"] for entry in json.loads(listed.stdout)]
    assert len(keys) == PROCESSES_PER_VERSION * WINDOWS_PER_PROCESS
    assert all(key.startswith("shop/2.0/CPU_PROFILE-") for key in keys)
    # a glob names the same objects as the prefix
    by_glob = diff_json(
        f"s3://{bucket}/fleet/shop/1.0/CPU_PROFILE-*",
        f"s3://{bucket}/fleet/*/2.0/CPU_PROFILE-*.cpuprofile",
        env=env,
    )
    assert by_glob["functions"] == by_url["functions"]
    nothing = cli(
        "diff",
        f"s3://{bucket}/fleet",
        f"s3://{bucket}/fleet",
        "--before-where",
        "deploy.colour=red",
        "--json",
        env=env,
    )
    assert nothing.returncode == 1 and "no profile matched" in nothing.stderr


def test_top_table(versions) -> None:  # type: ignore[no-untyped-def]
    bucket, truth, env = versions
    result = cli(
        "diff",
        f"s3://{bucket}/fleet/shop/1.0",
        f"s3://{bucket}/fleet/shop/2.0",
        "--top",
        "4",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("BEFORE s3://") and "4 profiles" in lines[0]
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["BEFORE", "AFTER", "CHANGE"]
    )
    rows = [line.split() for line in lines[header + 1 :]]
    assert len(rows) == 4
    assert {rows[0][4], rows[1][4]} == {"old", "new"}
    for row in rows:
        change = float(row[2])
        assert change == pytest.approx(
            float(row[1].rstrip("%")) - float(row[0].rstrip("%")), abs=0.02
        )
        if row[4] == "new":
            assert change == pytest.approx(100 * truth["2.0"]["new"], abs=100 * SHARE_TOLERANCE)


def _page(versions, tmp_path: Path, *extra: str) -> Path:  # type: ignore[no-untyped-def]
    bucket, _, env = versions
    target = tmp_path / "diff.html"
    result = cli(
        "diff",
        f"s3://{bucket}/fleet/shop/1.0",
        f"s3://{bucket}/fleet/shop/2.0",
        "-o",
        str(target),
        *extra,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return target


def _frames(dom: str) -> Dict[str, List[str]]:
    """Class list per drawn frame label."""
    out: Dict[str, List[str]] = {}
    for classes, text in re.findall(r'<div class="f ([^"]*)"[^>]*>([^<]+)</div>', dom):
        out.setdefault(text, []).append(classes)
    return out


def test_html_is_self_contained_and_marks_the_right_frames(
    versions, chromium: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    target = _page(versions, tmp_path)
    page = target.read_text()
    assert "default-src 'none'" in page and "connect-src 'none'" in page
    assert not re.search(r"https?://", page), "the page must reference no network resource"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)

    recorder = RequestRecorder()
    try:
        control = tmp_path / "control.html"
        control.write_text('<img src="http://probe.invalid/x.png">')
        dump_dom(chromium, control, tmp_path / "c0", "", *recorder.flags)
        assert any("probe.invalid" in line for line in recorder.page_requests()), (
            "the recorder must see a page's requests"
        )
        recorder.lines.clear()
        dom = dump_dom(chromium, target, tmp_path / "c1", "", *recorder.flags)
        assert recorder.page_requests() == [], recorder.page_requests()
    finally:
        recorder.close()

    rendered = re.search(r'data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) > 5, dom[:500]
    frames = _frames(dom)
    assert frames["new"] == ["new"], frames.get("new")  # only in AFTER
    assert all(c.split()[0] == "shrank" for c in frames["common"])
    assert all(c.split()[0] == "grew" for c in frames["helper"])
    assert "old" not in frames  # only in BEFORE: hidden until asked for
    rows = re.findall(r'<tr class="row" data-name="([^"]+)"', dom)
    assert set(rows[:2]) == {"old", "new"}

    shown = _frames(dump_dom(chromium, target, tmp_path / "c2", "#gone=1"))
    assert shown["old"] == ["gone"]
    searched = _frames(dump_dom(chromium, target, tmp_path / "c3", "#q=helper"))
    assert all("match" in c for c in searched["helper"])
    assert all("dim" in c for c in searched["common"])


def test_svg_shows_after_coloured_by_change(versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket, _, env = versions
    result = cli(
        "diff",
        f"s3://{bucket}/fleet/shop/1.0",
        f"s3://{bucket}/fleet/shop/2.0",
        "--svg",
        "-o",
        "-",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(result.stdout)
    ns = "{http://www.w3.org/2000/svg}"
    status = {}
    for group in root.iter(f"{ns}g"):
        text = group.find(f"{ns}text")
        if text is not None:
            status.setdefault(text.text, set()).add(group.get("class"))
    assert status["new"] == {"new"} and status["helper"] == {"grew"}
    assert status["common"] == {"shrank"} and "old" not in status


def _heapprofile(sizes: Dict[str, int]) -> str:
    children = [
        {
            "callFrame": {"functionName": name, "url": "/app/cache.py", "lineNumber": 9 + i},
            "selfSize": size,
            "id": i + 2,
            "children": [],
        }
        for i, (name, size) in enumerate(sizes.items())
    ]
    head = {
        "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1},
        "selfSize": 0,
        "id": 1,
        "children": children,
    }
    return json.dumps({"head": head, "samples": []})


def test_heap_profiles_compare_in_shares_of_bytes(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    (before / "HEAP_PROFILE-2026-11-24T10:00:00.000Z.heapprofile").write_text(
        _heapprofile({"load": 6000, "parse": 4000})
    )
    (after / "HEAP_PROFILE-2026-11-24T11:00:00.000Z.heapprofile").write_text(
        _heapprofile({"load": 1000, "parse": 1500})
    )
    (after / "HEAP_PROFILE-2026-11-24T11:05:00.000Z.heapprofile").write_text(
        _heapprofile({"load": 1000, "parse": 1500, "cache": 5000})
    )
    page = tmp_path / "heap.html"
    result = cli("diff", str(before), str(after), "--json", "-o", str(page))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # the JSON on stdout, the page written as well
    data = json.loads(
        re.search(r'id="profile-data">(.*?)</script>', page.read_text(), re.S).group(1)  # type: ignore[union-attr]
    )
    assert set(data["names"]) >= {"load", "parse", "cache"}
    assert doc["before"]["unit"] == "bytes" and doc["before"]["total"] == 10000
    assert doc["after"]["profiles"] == 2 and doc["after"]["total"] == 10000
    shares = {f["name"]: (f["before"], f["after"]) for f in doc["functions"]}
    assert shares["load"] == pytest.approx((0.6, 0.2))
    assert shares["parse"] == pytest.approx((0.4, 0.3))
    assert shares["cache"] == pytest.approx((0.0, 0.5))
    assert doc["functions"][0]["name"] == "cache"


def test_refuses_to_compare_different_kinds(tmp_path: Path) -> None:
    heap = tmp_path / "HEAP_PROFILE-2026-11-24T10:00:00.000Z.heapprofile"
    heap.write_text(_heapprofile({"load": 100}))
    cpu = tmp_path / "cpu.folded"
    cpu.write_text("main;work 10\n")
    result = cli("diff", str(heap), str(cpu), "--json")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "BEFORE holds memory and AFTER holds sample counts" in result.stderr
    assert "--kind" in result.stderr
    both = cli("diff", str(heap), str(heap), "--json", "--top", "3")
    assert both.returncode == 1 and "--top and --json" in both.stderr
