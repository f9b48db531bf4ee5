"""Profiles with known payloads, and reading them back with boto3 (not the exporter's client)."""

from __future__ import annotations

import hashlib
from typing import Dict, List


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
