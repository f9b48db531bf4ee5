"""What differs between storage backends, behind one small interface.

The exporter speaks fsspec; only three things depend on the backend: how the
container (bucket, directory) is created, how an object is created without
overwriting an existing one, and how content type and metadata are attached.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Mapping, Set

_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}


def missing_backend_message(protocol: str, exc: BaseException) -> str:
    extra = _EXTRAS.get(protocol)
    fix = f"pip install 'otel-profiling[{extra}]'" if extra else "install the fsspec implementation"
    return f"No fsspec backend for '{protocol}://' URLs ({exc}). Fix: {fix}."


class Backend:
    """Generic fsspec backend: ``makedirs`` once per directory, ``pipe_file(mode='create')``."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self._ready: Set[str] = set()

    def ensure_container(self, directory: str) -> None:
        if directory in self._ready:
            return
        if directory:
            self.fs.makedirs(directory, exist_ok=True)
        self._ready.add(directory)

    def write_kwargs(self, content_type: str, metadata: Mapping[str, str]) -> Dict[str, Any]:
        return {}

    def create(
        self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Write a new object; ``FileExistsError`` if ``path`` exists."""
        self.fs.pipe_file(path, data, mode="create", **self.write_kwargs(content_type, metadata))


class LocalBackend(Backend):
    """Local files: temp file then ``os.link``, which is atomic and fails if the name exists."""

    def create(
        self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)
        finally:
            os.unlink(tmp)


class S3Backend(Backend):
    """S3: the bucket is checked (and created) once; ``If-None-Match: *`` prevents overwrites."""

    def ensure_container(self, directory: str) -> None:
        bucket = directory.split("/", 1)[0]
        if bucket in self._ready:
            return
        if not self.fs.exists(bucket):
            params: Dict[str, Any] = {"Bucket": bucket}
            region = (getattr(self.fs, "client_kwargs", None) or {}).get("region_name")
            if region and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self.fs.call_s3("create_bucket", **params)
            except PermissionError as exc:
                raise PermissionError(
                    f"Bucket '{bucket}' does not exist and these credentials may not create it "
                    f"({exc}). Fix: create the bucket, or grant s3:CreateBucket."
                ) from None
            except FileExistsError:
                pass  # created meanwhile by another process
            self.fs.invalidate_cache(bucket)
        self._ready.add(bucket)

    def write_kwargs(self, content_type: str, metadata: Mapping[str, str]) -> Dict[str, Any]:
        return {"ContentType": content_type, "Metadata": dict(metadata)}


class GcsBackend(Backend):
    def write_kwargs(self, content_type: str, metadata: Mapping[str, str]) -> Dict[str, Any]:
        return {"content_type": content_type, "metadata": dict(metadata)}


def backend_for(fs: Any) -> Backend:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return LocalBackend(fs)
    if "s3" in protocols:
        return S3Backend(fs)
    if "gs" in protocols or "gcs" in protocols:
        return GcsBackend(fs)
    return Backend(fs)
