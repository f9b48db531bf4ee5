"""A backend that drips its answers one byte a second: a real proxy in front of moto's server.

Per-read timeouts never fire on such a backend (a byte arrives every second),
so only an overall deadline ends a request. Each export must return by its
deadline, cancel what it started (the proxy sees the connections closed),
start no thread per try, and work again as soon as the backend does.
"""

from __future__ import annotations

import time

from faults import FaultProxy, thread_names
from reliability_helpers import bucket_objects, sha
from support import make_profile, wait_for

from otel_profiling.exporters import S3Exporter

TIMEOUT_S = 1.5
# the deadline, the exporter's grace for cancelled requests to wind down (2 s), and room
# for a loaded 2-core machine
BOUND_S = TIMEOUT_S + 2.0 + 3.0


def exporter_behind(proxy: FaultProxy, bucket: str) -> S3Exporter:
    return S3Exporter(
        bucket=bucket, end_point=proxy.endpoint, use_ssl=False, timeout_millis=TIMEOUT_S * 1000
    )


def test_dripping_backend_exports_end_by_the_deadline_and_recover(
    s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    proxy = FaultProxy(s3_endpoint, drip_interval=1.0).start()
    proxy.set_mode("drip")  # from the first request on: the bucket check drips too
    exporter = exporter_behind(proxy, bucket)
    try:
        counts = []
        for i in range(12):
            profiles = [make_profile(10 * i + j) for j in range(3)]
            began = time.monotonic()
            unsent = exporter.export_unsent(profiles)
            elapsed = time.monotonic() - began
            assert unsent == profiles
            assert elapsed < BOUND_S, (i, elapsed)
            counts.append(len(thread_names()))
        # no thread per try: what the first export needed (fsspec's I/O loop) and no more
        assert counts[-1] == counts[0] and max(counts) == counts[0], counts
        assert proxy.count("HEAD") + proxy.count("PUT") >= 12  # each try reached the backend
        # abandoned requests were cancelled: their connections are closed, nothing drips
        assert wait_for(lambda: proxy.dripping == 0, 15), proxy.dripping

        proxy.set_mode("forward")  # the backend recovers (no dripping answer is released)
        later = [make_profile(500 + j) for j in range(3)]
        assert exporter.export_unsent(later) == []
        objects = bucket_objects(boto3_client, bucket)
        assert {sha(p.data) for p in later} <= {sha(v) for v in objects.values()}
        for profile in later:
            assert objects[profile.key] == profile.data
    finally:
        proxy.stop()


def test_recovery_after_dripping_started_mid_way(
    s3_endpoint: str, bucket: str, boto3_client
) -> None:  # type: ignore[no-untyped-def]
    """The backend works, then drips (bucket known, uploads in flight), then works again."""
    proxy = FaultProxy(s3_endpoint, drip_interval=1.0).start()
    exporter = exporter_behind(proxy, bucket)
    try:
        first = make_profile(1)
        assert exporter.export_unsent([first]) == []
        proxy.set_mode("drip")
        for i in range(5):
            profile = make_profile(100 + i)
            began = time.monotonic()
            assert exporter.export_unsent([profile]) == [profile]
            assert time.monotonic() - began < BOUND_S
        assert wait_for(lambda: proxy.dripping == 0, 15), proxy.dripping
        proxy.set_mode("forward")
        last = make_profile(200)
        assert exporter.export_unsent([last]) == []
        objects = bucket_objects(boto3_client, bucket)
        assert objects[first.key] == first.data and objects[last.key] == last.data
    finally:
        proxy.stop()
