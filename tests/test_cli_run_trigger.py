"""``run`` starts real programs with profiling configured; ``trigger`` really signals them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clitools import cli
from support import APPS, child_env, wait_for
from viewers import cpuprofile_function_names, load_cpuprofile

WORKLOAD = {"run_workload", "handle_request", "fibonacci", "checksum_lines"}


def test_run_profiles_the_whole_program(tmp_path: Path) -> None:
    out = tmp_path / "profiles"
    script = tmp_path / "exits3.py"
    script.write_text(
        "import runpy, sys\nsys.argv = ['w', '5']\n"
        f"runpy.run_path({str(APPS / 'cli_workload.py')!r}, run_name='__main__')\nsys.exit(3)\n"
    )
    result = cli("run", "--cpu", "--url", f"file://{out}", "--", sys.executable, str(script))
    assert result.returncode == 3, result.stderr  # the program's own exit code
    assert "done" in result.stdout
    files = list(out.glob("CPU_PROFILE-*.cpuprofile"))
    assert len(files) == 1, files
    profile = load_cpuprofile(files[0].read_bytes())
    names = cpuprofile_function_names(profile)
    assert names >= WORKLOAD
    # stacks start at the program, not in the interpreter's start-up imports
    assert "execsitecustomize" not in names and "start_from_env" not in names


def test_run_module_with_duration_to_s3(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    env = child_env(AWS_ENDPOINT_URL=s3_endpoint)
    env["PYTHONPATH"] = f"{APPS}:{env['PYTHONPATH']}"
    started = time.monotonic()
    result = cli(
        "run",
        "--cpu",
        "--duration",
        "0.5",
        "--service",
        "cli-test",
        "--url",
        f"s3://{bucket}/runs",
        "-m",
        "cli_workload",
        "--",
        "20",
        "4",  # idle at the end, as a service mostly is: the window's export completes
        env=env,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed > 5.0  # the program ran well past the window
    listing = cli("ls", f"s3://{bucket}/runs", "--json", env=env)
    assert listing.returncode == 0, (listing.stderr, result.stderr)
    rows = json.loads(listing.stdout)
    assert len(rows) == 1, rows
    assert rows[0]["service"] == "cli-test" and rows[0]["status"] == "OK"
    assert 400 <= rows[0]["duration_ms"] < 3000, rows[0]


def test_run_with_signal_and_trigger(tmp_path: Path) -> None:
    out = tmp_path / "profiles"
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_profiling",
            "run",
            "--cpu",
            "--signal",
            "SIGUSR2",
            "--url",
            f"file://{out}",
            "--",
            sys.executable,
            str(APPS / "cli_until_stopped.py"),
            str(stop),
        ],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line
        assert int(line.split()[1]) == proc.pid  # run replaced itself with the program
        time.sleep(0.5)
        assert not out.exists() or not list(out.iterdir())  # nothing profiled before the signal
        assert _listed_profiling(proc.pid) == "no"
        first = cli("trigger", str(proc.pid), "--json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout) == {
            "signalled": [{"pid": proc.pid, "name": "python", "signal": "SIGUSR2"}],
            "skipped": [],
        }
        assert wait_for(lambda: _listed_profiling(proc.pid) == "yes", timeout=10)
        time.sleep(1.5)  # about 150 samples: each workload function holds a good share
        stopped = cli("trigger", str(proc.pid), "--force", "--signal", "SIGUSR2")  # PID alone
        assert stopped.returncode == 0 and stopped.stdout == f"sent SIGUSR2 to {proc.pid}\n"
        files = wait_for(lambda: list(out.glob("CPU_PROFILE-*.cpuprofile")), timeout=30)
        assert len(files) == 1
    finally:
        stop.touch()
        try:
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    names = cpuprofile_function_names(load_cpuprofile(files[0].read_bytes()))
    assert names >= WORKLOAD


def _listed_profiling(pid: int) -> str:
    """The PROFILING column of ``trigger PID --list`` for that process."""
    listing = cli("trigger", str(pid), "--list")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    column = header.split().index("PROFILING")
    (row,) = [line.split() for line in rows if line.split()[0] == str(pid)]
    return row[column]


def test_trigger_refuses_a_gone_or_unprepared_process() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    result = cli("trigger", str(gone.pid))
    assert result.returncode == 1 and "no process" in result.stderr
    assert result.stderr.count("\n") == 1

    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)
        refused = cli("trigger", str(plain.pid))
        assert refused.returncode == 1 and "runs an otel-profiling agent" in refused.stderr
        assert "nothing was sent" in refused.stderr
        forced = cli("trigger", str(plain.pid), "--force")  # --force still never ends it
        assert forced.returncode == 1 and "does not handle SIGUSR2" in forced.stderr
        time.sleep(0.2)
        assert plain.poll() is None  # still alive: the signal was not sent
    finally:
        plain.kill()
        plain.wait()
    assert cli("trigger", "1", "--force", "--signal", "SIGNOPE").returncode == 1
    zero = cli("trigger", "1", "--seconds", "0")
    assert zero.returncode == 1 and "more than 0 and at most 3600 seconds" in zero.stderr


def test_run_errors(tmp_path: Path) -> None:
    missing = cli("run", "--cpu", "--", "no-such-program-xyz")
    assert missing.returncode == 1 and "command not found" in missing.stderr
    nothing = cli("run", "--cpu")
    assert nothing.returncode == 1 and "--" in nothing.stderr
    scheme = cli("run", "--url", "nosuchscheme://x", "--", sys.executable, "-c", "pass")
    assert scheme.returncode == 1 and "nosuchscheme" in scheme.stderr
    negative = cli("run", "--duration", "-1", "--", sys.executable, "-c", "pass")
    assert negative.returncode == 1 and "--duration" in negative.stderr


def test_trigger_window_ends_early_on_ctrl_c(tmp_path: Path) -> None:
    """``--seconds``: Ctrl-C during the window still sends the stop; the profile is exported."""
    import signal

    out = tmp_path / "profiles"
    app = subprocess.Popen(
        [sys.executable, str(APPS / "context_app.py"), str(tmp_path / "unused")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(
            OTEL_EXPORTER_FSSPEC_PROFILES_URL=f"file://{out}", OTEL_BPP_SCHEDULE_DELAY="200"
        ),
    )
    try:
        assert app.stdout is not None and app.stdout.readline().startswith("ready")
        window = subprocess.Popen(
            [sys.executable, "-m", "otel_profiling", "trigger", str(app.pid), "--seconds", "600"],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert window.stdout is not None
        assert window.stdout.readline() == f"sent SIGUSR2 to {app.pid} (python)\n"
        assert window.stdout.readline().startswith("profiling for 600 s")
        window.send_signal(signal.SIGINT)
        rest, _ = window.communicate(timeout=60)
        assert window.returncode == 0
        assert rest == f"interrupted: stopping now\nsent SIGUSR2 to {app.pid} (python)\n"
        assert wait_for(lambda: list(out.glob("CPU_PROFILE-*.cpuprofile")), timeout=30)
    finally:
        if app.poll() is None:
            app.communicate("quit\n", timeout=30)


@pytest.mark.parametrize("flags", [("--force",), ()])
def test_trigger_window_on_a_process_that_exits_during_it(flags, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The program exits inside ``--seconds``: its agent exports at exit, and the stop says
    so on stderr (exit code 0) instead of failing on the PID that is gone."""
    out = tmp_path / "profiles"
    stop = tmp_path / "stop"
    app = subprocess.Popen(
        [sys.executable, "-m", "otel_profiling", "run", "--cpu", "--signal", "SIGUSR2"]
        + ["--url", f"file://{out}", "--", sys.executable, str(APPS / "cli_until_stopped.py")]
        + [str(stop)],
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None and app.stdout.readline().startswith("ready")
        window = subprocess.Popen(
            [sys.executable, "-m", "otel_profiling", "trigger", str(app.pid), "--seconds", "4"]
            + list(flags),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert window.stdout is not None
        assert window.stdout.readline().startswith(f"sent SIGUSR2 to {app.pid}")
        stop.touch()
        app.communicate(timeout=60)  # reaped: the PID is gone before the window ends
        _, err = window.communicate(timeout=60)
        assert window.returncode == 0, err
        assert f"process {app.pid} exited during the window" in err, err
        assert "Error" not in err
    finally:
        stop.touch()
        if app.poll() is None:
            app.communicate(timeout=60)
    assert app.returncode == 0
    assert wait_for(lambda: list(out.glob("CPU_PROFILE-*.cpuprofile")), timeout=30)
