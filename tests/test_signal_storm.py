"""A storm of real SIGUSR2 signals against a working application, through its shutdown.

The application has a SIGUSR2 handler of its own before the agent takes the
signal. Signals keep coming, 2 ms apart, while it works, while the agent
shuts down and after: its work goes on undisturbed, every profile that ended
is counted once by the batch processor and written once, the windows follow
each other without overlapping (one CPU profile at a time), the shutdown is
bounded, and once it is done the application's own handler gets the signal
again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

from support import child_env
from viewers import load_cpuprofile

STORM_APP = """
import json, select, signal, sys, time
from otel_profiling import ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.processors import BatchProfileProcessor, ProfileProcessor
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import SignalTrigger

own = []
signal.signal(signal.SIGUSR2, lambda signum, frame: own.append(signum))

class Ended(ProfileProcessor):
    def __init__(self):
        self.windows = []
    def on_end(self, profile):
        self.windows.append((profile.start_time.timestamp(), profile.end_time.timestamp()))

ended = Ended()
batch = BatchProfileProcessor(FsspecProfileExporter(sys.argv[1]), schedule_delay_millis=50)
agent = ProfilingAgent()
agent.register(SignalTrigger(signal.SIGUSR2), CpuProfiler())
agent.add_profile_processor(ended)
agent.add_profile_processor(batch)
agent.start()
print("ready", flush=True)

def work():
    loops = checksum = 0
    while not select.select([sys.stdin], [], [], 0)[0]:  # until the test writes a line
        checksum += sum(i * i for i in range(200))
        loops += 1
    sys.stdin.readline()
    return loops, checksum == loops * sum(i * i for i in range(200))

loops, right = work()
seen_before = len(own)
began = time.monotonic()
agent.shutdown(20_000)
shutdown_s = time.monotonic() - began
print("shut down", flush=True)
loops_after, right_after = work()
print(json.dumps({
    "loops": [loops, loops_after],
    "right": right and right_after,
    "shutdown_s": shutdown_s,
    "own_before": seen_before,
    "own_after": len(own) - seen_before,
    "windows": ended.windows,
    "exported": batch.exported_profiles,
    "other": batch.spooled_profiles + batch.failed_profiles + batch.dropped_profiles
             + batch.error_profiles,
}), flush=True)
"""


class Storm:
    """SIGUSR2 to ``pid`` every 2 ms (every tenth back to back with the next), until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            os.kill(self.pid, signal.SIGUSR2)
            self.sent += 1
            if self.sent % 10:
                time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_storm_of_signals_through_shutdown_loses_no_profile_and_leaves_the_app_alone(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", STORM_APP, f"file://{out}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    storm = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        storm = Storm(proc.pid)
        time.sleep(0.5)  # toggles: windows start and end while earlier ones are exported
        proc.stdin.write("shut down\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "shut down"  # the storm went on meanwhile
        time.sleep(0.3)  # and goes on, now to the application's own handler
        storm.stop()
        stdout, stderr = proc.communicate("exit\n", timeout=120)
    finally:
        if storm is not None:
            storm.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    facts = json.loads(stdout.splitlines()[-1])
    # the main thread worked before and after the shutdown, and computed right
    assert min(facts["loops"]) > 0 and facts["right"]
    assert facts["shutdown_s"] < 20
    # The agent had the signal until it shut down; then the application's own
    # handler had it back (a storm of 0.3 s after the shutdown reaches it).
    assert facts["own_before"] == 0 and facts["own_after"] >= 1
    windows = facts["windows"]
    # Signals that arrive before the main thread runs Python again merge into
    # one call of the handler (Python's signal handling), so there are fewer
    # toggles than signals; over the storm's 0.5 s there are still several.
    assert 2 <= len(windows) <= storm.sent
    # one CPU profile at a time: each window begins when (or after) the previous ended
    assert all(start <= end for start, end in windows)
    for (_, previous_end), (start, _) in pairwise(windows):
        assert previous_end <= start
    # every ended profile is in exactly one counter, and each exported one is a file
    assert facts["exported"] + facts["other"] == len(windows)
    files = sorted(os.listdir(out))
    assert len(files) == facts["exported"] == len(windows)
    for name in files:
        load_cpuprofile((out / name).read_bytes())  # each a complete, valid .cpuprofile
