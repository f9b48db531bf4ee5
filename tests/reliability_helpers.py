"""Profiles with known payloads, and reading them back with boto3 (not the exporter's client)."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Optional

from otel_profiling import Profile, ProfileKind
from otel_profiling.formats import default_format

_BASE = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc)


def make_profile(
    index: int, size: int = 2048, start: Optional[datetime] = None, **attributes: object
) -> Profile:
    """An ended CPU profile with a random payload and a distinct start time."""
    profile = Profile(
        ProfileKind.CPU_PROFILE,
        default_format(ProfileKind.CPU_PROFILE),
        attributes={"test.index": index, **attributes},  # type: ignore[dict-item]
        start_time=start or _BASE + timedelta(milliseconds=7 * index) + _jitter(),
        trigger="test",
    )
    profile.end(f'{{"index":{index}}}'.encode() + os.urandom(max(size - 16, 0)))
    return profile


def _jitter() -> timedelta:
    return timedelta(seconds=int.from_bytes(os.urandom(3), "big"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bucket_objects(client, bucket: str) -> Dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Every object in ``bucket``: key → bytes (empty if the bucket does not exist)."""
    out: Dict[str, bytes] = {}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for page in pages:
            for obj in page.get("Contents", []):
                out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    except client.exceptions.NoSuchBucket:
        return {}
    return out


def digests(objects: Dict[str, bytes]) -> List[str]:
    return sorted(sha(v) for v in objects.values())
