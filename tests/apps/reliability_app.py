"""A child process for the reliability tests: ``python reliability_app.py MODE ARGS...``.

Each mode prints one line per fact the test checks (``key <key> <sha256>``,
``spooled N``...), so the test reads them from stdout. Logs go to stderr.
"""

from __future__ import annotations

import faulthandler
import hashlib
import logging
import os
import signal
import sys
import time
import traceback
from datetime import datetime

from support import make_profile

from otel_profiling import Profile, ProfilingAgent
from otel_profiling.exporters import FsspecProfileExporter, S3Exporter
from otel_profiling.processors import BatchProfileProcessor
from otel_profiling.processors.spool import Spool
from otel_profiling.profilers import CpuProfiler
from otel_profiling.triggers import SignalTrigger

faulthandler.enable()  # a crash in a child shows its stacks on stderr, which the tests print
logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
logging.getLogger("otel_profiling").setLevel(logging.DEBUG)


def say(*parts: object) -> None:
    """One line in one write: forked processes share stdout, and under PYTHONUNBUFFERED
    ``print`` writes each part separately, so their lines would interleave."""
    os.write(sys.stdout.fileno(), (" ".join(map(str, parts)) + "\n").encode())


def own_profile(payload: bytes, start: datetime | None = None) -> Profile:
    """A profile stamped with this process's pid (a forked child's differs from its parent's)."""
    return make_profile(payload, start=start, **{"process.pid": os.getpid()})


def s3_exporter(endpoint: str, bucket: str, **kwargs: object) -> S3Exporter:
    return S3Exporter(bucket=bucket, end_point=endpoint, use_ssl=False, **kwargs)  # type: ignore[arg-type]


def spool_then_wait(endpoint: str, bucket: str, count: str) -> None:
    """Export to a dead endpoint: every profile lands in the spool; then wait to be killed."""
    processor = BatchProfileProcessor(
        s3_exporter(endpoint, bucket, timeout_millis=500), schedule_delay_millis=50
    )
    assert processor.spool is not None
    for i in range(int(count)):
        payload = f'{{"nodes":[],"n":{i},"pid":{os.getpid()}}}'.encode() + os.urandom(64)
        profile = own_profile(payload)
        processor.on_end(profile)
        say("key", profile.key, hashlib.sha256(payload).hexdigest())
        time.sleep(0.002)
    deadline = time.monotonic() + 60
    while processor.spool.pending() < int(count) and time.monotonic() < deadline:
        time.sleep(0.05)
    say("spooled", processor.spool.pending())
    while True:
        time.sleep(1)


def start_and_drain(endpoint: str, bucket: str) -> None:
    """A new process of the service: what the spool holds is sent in the background."""
    exporter = s3_exporter(endpoint, bucket)
    spool = Spool.from_env(destination=exporter.destination)  # what the processor will use
    assert spool is not None
    waiting = spool.pending()
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=50, spool=spool)
    deadline = time.monotonic() + 60
    while processor.resent_profiles < waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    say("pending", processor.spool.pending(), "resent", processor.resent_profiles)
    processor.shutdown()


def same_key(url: str, start_iso: str, at: str, endpoint: str = "") -> None:
    """Write one profile with a fixed start time at a given wall-clock moment."""
    if endpoint:
        exporter: FsspecProfileExporter = FsspecProfileExporter(
            url,
            {
                "endpoint_url": endpoint,
                "config_kwargs": {
                    "request_checksum_calculation": "when_required",
                    "response_checksum_validation": "when_required",
                },
            },
        )
    else:
        exporter = FsspecProfileExporter(url)
    payload = f"written by {os.getpid()}".encode()
    profile = own_profile(payload, datetime.fromisoformat(start_iso))
    exporter.fs  # noqa: B018 - connect before the rendezvous
    time.sleep(max(float(at) - time.time(), 0))
    say("unsent", len(exporter.export_unsent([profile])), hashlib.sha256(payload).hexdigest())


def bad_credentials(endpoint: str, bucket: str, key: str, secret: str) -> None:
    """Wrong credentials: one clear error, nothing secret printed, the app keeps going."""
    exporter = S3Exporter(
        bucket=bucket, end_point=endpoint, use_ssl=False, access_key=key, secret_key=secret
    )
    logging.getLogger("demo").warning("exporter: %r", exporter)
    processor = BatchProfileProcessor(exporter, schedule_delay_millis=50)
    for i in range(3):
        processor.on_end(own_profile(f"profile {i}".encode()))
        processor.force_flush(20_000)
    total = sum(i * i for i in range(100_000))  # the application still runs
    say("alive", total > 0, "exported", processor.exported_profiles)
    say("spooled", processor.spooled_profiles)
    processor.shutdown()


def preload_fork(endpoint: str, bucket: str) -> None:
    """gunicorn --preload: the parent starts the agent, exports, then forks two workers."""
    agent = ProfilingAgent()
    agent.register(SignalTrigger(signal.SIGUSR2), CpuProfiler())
    agent.start(exporter=s3_exporter(endpoint, bucket))

    def one_profile(label: str) -> None:
        os.kill(os.getpid(), signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not agent.active_profiles and time.monotonic() < deadline:
            time.sleep(0.01)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            sum(range(1000))
        os.kill(os.getpid(), signal.SIGUSR2)
        while agent.active_profiles and time.monotonic() < deadline:
            time.sleep(0.01)
        say(label, os.getpid(), "flushed", agent.force_flush(20_000))

    one_profile("parent")
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                time.sleep(0.05)
                one_profile("child")
                agent.shutdown(20_000)
                code = 0
            except BaseException:
                traceback.print_exc()  # os._exit below would hide it
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        say("child-exit", pid, os.waitstatus_to_exitcode(status))
    one_profile("parent-after")
    agent.shutdown()


def fork_during_export(endpoint: str, bucket: str) -> None:
    """A real fork while an upload is in flight; the test drives the steps over stdin."""
    processor = BatchProfileProcessor(
        s3_exporter(endpoint, bucket, timeout_millis=60_000),
        schedule_delay_millis=20,
        export_timeout_millis=60_000,
    )
    assert processor.spool is not None
    processor.on_end(own_profile(b'{"step": "warm"}'))
    say("flushed", processor.force_flush(30_000), "exported", processor.exported_profiles)
    sys.stdin.readline()  # the backend now drips its answers
    in_flight = own_profile(b'{"step": "in flight"}')
    processor.on_end(in_flight)
    say("queued", in_flight.key)
    sys.stdin.readline()  # the upload is in flight
    parent_fs = processor.exporter.fs  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            counters = [
                processor.exported_profiles,
                processor.spooled_profiles,
                processor.failed_profiles,
                processor.dropped_profiles,
                processor.error_profiles,
                processor.resent_profiles,
                processor.queued_profiles,
                processor.spool.spooled_profiles,
            ]
            child = own_profile(b'{"step": "child"}')
            processor.on_end(child)
            flushed = processor.force_flush(30_000)
            fresh_fs = processor.exporter.fs is not parent_fs  # type: ignore[attr-defined]
            say("child", *counters, flushed, processor.exported_profiles, fresh_fs, child.key)
            processor.shutdown(10_000)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    say("child-exit", os.waitstatus_to_exitcode(status))
    sys.stdin.readline()  # the in-flight answer is let through
    flushed = processor.force_flush(60_000)
    say("parent", flushed, processor.exported_profiles, processor.spooled_profiles)
    processor.shutdown(10_000)


def exit_while_hanging(endpoint: str, bucket: str) -> None:
    """Interpreter exit with a backend that never answers: bounded by the exit timeout."""
    agent = ProfilingAgent(exit_timeout_millis=2_000)
    agent.add_profile_processor(
        BatchProfileProcessor(s3_exporter(endpoint, bucket), export_timeout_millis=2_000)
    )
    agent.start()
    for processor in agent.processors:
        processor.on_end(own_profile(b'{"hanging": true}'))
    say("exiting", time.time())


if __name__ == "__main__":
    modes = {
        "spool-then-wait": spool_then_wait,
        "start": start_and_drain,
        "same-key": same_key,
        "bad-credentials": bad_credentials,
        "preload-fork": preload_fork,
        "exit-while-hanging": exit_while_hanging,
        "fork-during-export": fork_during_export,
    }
    modes[sys.argv[1]](*sys.argv[2:])
