"""A real ``os.fork()`` while an upload is in flight (its answer held by a dripping proxy).

The child must not inherit anything held by the parent's export: it exports
its own profile at once, with counters that start at zero and a filesystem
instance of its own, while the parent's upload is still in flight; the
parent's upload then completes. Each profile is stored once.
"""

from __future__ import annotations

import subprocess
import sys

from faults import FaultProxy
from reliability_helpers import bucket_objects
from support import APPS, child_env, wait_for

APP = str(APPS / "reliability_app.py")


def test_fork_while_an_upload_is_in_flight(s3_endpoint: str, bucket: str, boto3_client) -> None:  # type: ignore[no-untyped-def]
    proxy = FaultProxy(s3_endpoint, drip_interval=1.0).start()
    proc = subprocess.Popen(
        [sys.executable, APP, "fork-during-export", proxy.endpoint, bucket],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(OTEL_SERVICE_NAME="fork-test"),
    )
    assert proc.stdin is not None and proc.stdout is not None

    def tell(line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    try:
        assert proc.stdout.readline().split() == ["flushed", "True", "exported", "1"]
        proxy.set_mode("drip")
        tell("drip")
        in_flight_key = proc.stdout.readline().split()[1]
        assert wait_for(lambda: proxy.dripping >= 1, 30)  # the upload's answer is dripping
        proxy.set_mode("forward")  # new requests pass; the in-flight answer keeps dripping
        tell("fork")
        child = proc.stdout.readline().split()
        assert child[0] == "child", child
        assert child[1:9] == ["0"] * 8  # every counter starts at zero in the child
        flushed, exported, fresh_fs, child_key = child[9:]
        assert (flushed, exported, fresh_fs) == ("True", "1", "True")
        assert proc.stdout.readline().split() == ["child-exit", "0"]
        assert proxy.dripping >= 1  # the parent's upload was in flight all along
        proxy.release()
        tell("release")
        assert proc.stdout.readline().split() == ["parent", "True", "2", "0"]
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.stop()
    assert proc.returncode == 0, err
    objects = bucket_objects(boto3_client, bucket)
    assert len(objects) == 3  # warm, in flight, child: each once
    assert objects[in_flight_key] == b'{"step": "in flight"}'
    assert objects[child_key] == b'{"step": "child"}'
