"""What differs between storage backends, behind one small interface, in one registry.

The exporter speaks fsspec; only a few things depend on the backend: how the
container (bucket, directory) is created, how an object is created without
overwriting an existing one, how content type and metadata are attached, the
default and prepared storage options, and which extra installs the fsspec
implementation. Each is a method of ``Backend``; a protocol's quirks are one
subclass registered by protocol name, as fsspec registers filesystems:

    @register_backend("s3", "s3a", extra="s3")
    class S3Backend(AsyncBackend): ...

A protocol without a class of its own gets ``Backend`` (synchronous
filesystems) or ``AsyncBackend``.

Every operation is a coroutine, so the exporter has one code path with one
deadline. An async filesystem (s3fs, gcsfs, adlfs: ``fs.async_impl``) awaits
its own coroutines, which the deadline cancels mid-request. A synchronous one
(local disk, memory) makes plain calls from coroutines that never suspend
(even its ``sleep`` blocks), so they run on the calling thread without an
event loop. No backend holds a lock across a call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import os
import posixpath
import re
import secrets
import time
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Set, Tuple, Type, TypeVar

from otel_profiling.version import install_command

_PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
_SINGLE_PUT_LIMIT = 100 * 2**20  # s3fs uses one PutObject below this size
_NAME_MAX = 255  # bytes in one path component on common local file systems
# botocore's own check of a bucket name (the request is refused before sending otherwise)
_S3_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}\Z|arn:")
# botocore >= 1.36 sends CRC32 checksums that some S3-compatible servers reject.
WHEN_REQUIRED = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}

B = TypeVar("B", bound="type[Backend]")
_REGISTRY: Dict[str, Type[Backend]] = {}


def register_backend(*protocols: str, extra: Optional[str] = None) -> Callable[[B], B]:
    """Class decorator: ``cls`` handles URLs of ``protocols``; ``extra`` is the package
    extra that installs their fsspec implementation (the install hint)."""

    def register(cls: B) -> B:
        cls.protocols = tuple(protocols)
        cls.extra = extra
        for protocol in protocols:
            _REGISTRY[protocol] = cls
        return cls

    return register


def backend_class(protocol: str, async_impl: bool = False) -> Type[Backend]:
    """The class registered for ``protocol``; else the generic sync or async one."""
    found = _REGISTRY.get(protocol)
    if found is not None:
        return found
    return AsyncBackend if async_impl else Backend


def install_hint(protocol: str) -> str:
    """How to get the fsspec implementation of ``protocol``."""
    extra = backend_class(protocol).extra
    return install_command(extra) if extra else "install the fsspec implementation"


def missing_backend_message(protocol: str, exc: BaseException) -> str:
    """Why URLs of ``protocol`` cannot be opened, and the fix: the extra to install, or,
    for a scheme no fsspec implementation claims (a typo such as ``s4://``), the URL."""
    from fsspec.registry import known_implementations, registry

    if protocol not in known_implementations and protocol not in registry:
        return (
            f"Unknown URL scheme '{protocol}://' ({exc}). Fix: check the URL: use s3://, "
            "gs://, az://, file:// or a local path (or install the fsspec implementation "
            f"that provides '{protocol}://')."
        )
    return f"No fsspec backend for '{protocol}://' URLs ({exc}). Fix: {install_hint(protocol)}."


def normalize_scheme(url: str) -> Tuple[str, str]:
    """``(url, protocol)``: ``url`` with its scheme in lower case, and that scheme (``file``
    for a path without one). Schemes are case-insensitive (RFC 3986, so ``S3://`` is
    ``s3://``), while fsspec knows them in lower case only."""
    from fsspec.core import split_protocol

    protocol = split_protocol(url)[0]
    if not protocol:
        return url, "file"
    lowered = protocol.lower()
    return lowered + url[len(protocol) :], lowered


def default_options(protocol: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """``options`` with the backend's defaults for configuration from outside code
    (the environment, ``S3Exporter``, the command line)."""
    return backend_class(protocol).default_options(options)


def prepare_options(protocol: str, options: Mapping[str, Any], timeout_s: float) -> Dict[str, Any]:
    """Storage options with the export timeout applied and what is unsafe refused."""
    return backend_class(protocol).prepare_options(options, timeout_s)


def check_target(protocol: str, base: str, key_template: str) -> None:
    """Construction-time checks of the bucket or directory that need no request."""
    backend_class(protocol).check_target(base, key_template)


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; bytes the environment could not decode come back as they were."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _static_prefix(path: str) -> str:
    """The part of ``path`` before its first placeholder, up to the last ``/``."""
    brace = path.find("{")
    return path if brace < 0 else path[: path.rfind("/", 0, brace) + 1]


def _with_remedy(exc: Exception, remedy: str) -> Exception:
    exc.remedy = remedy  # type: ignore[attr-defined]
    return exc


class Backend:
    """A synchronous fsspec filesystem: ``makedirs`` once per directory, ``pipe_file``.

    Its calls block the calling thread; the exporter runs them there. The
    class methods are the backend's option handling, used before a
    filesystem exists.
    """

    is_async = False
    protocols: ClassVar[Tuple[str, ...]] = ()
    extra: ClassVar[Optional[str]] = None  # the package extra installing the implementation

    @classmethod
    def default_options(cls, options: Mapping[str, Any]) -> Dict[str, Any]:
        """``options`` completed with this backend's defaults (none here)."""
        return dict(options)

    @classmethod
    def prepare_options(cls, options: Mapping[str, Any], timeout_s: float) -> Dict[str, Any]:
        """``options`` for an exporter whose writes must end within ``timeout_s``."""
        return dict(options)

    @classmethod
    def check_target(cls, base: str, key_template: str) -> None:
        """``ValueError`` for what is wrong with the container of ``base`` (the URL without
        scheme), found without a request; nothing to check here."""

    @classmethod
    def refused_options(cls, options: Mapping[str, Any]) -> List[str]:
        """The names in ``options`` the filesystem would refuse, as its signature says (a
        ``TypeError`` later, at the first request); none known here."""
        return []

    @classmethod
    def check_credentials(cls, options: Mapping[str, Any]) -> None:
        """``ValueError`` for credentials in ``options`` that cannot work; none known here."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self._ready: Set[str] = set()

    async def sleep(self, seconds: float) -> None:
        """Wait between tries (blocking: nothing else runs on this thread meanwhile)."""
        time.sleep(seconds)

    def container(self, path: str) -> str:
        """What must exist before ``path`` can be written (a directory, a bucket)."""
        return posixpath.dirname(path)

    async def ensure_container(self, container: str) -> None:
        """Create ``container`` unless an earlier call did (concurrent calls are harmless)."""
        if container not in self._ready:
            await self._make_container(container)
            self._ready.add(container)

    def forget_container(self, container: str) -> None:
        """Make the next ``ensure_container`` check again."""
        self._ready.discard(container)

    async def _make_container(self, directory: str) -> None:
        if directory:
            self.fs.makedirs(directory, exist_ok=True)

    async def holds(self, path: str, data: bytes) -> bool:
        """Whether the object at ``path`` already has exactly ``data`` (a re-send that landed)."""
        try:
            return bytes(self.fs.cat_file(path)) == data
        except FileNotFoundError:
            return False

    def write_kwargs(self, content_type: str, metadata: Mapping[str, str]) -> Dict[str, Any]:
        return {}

    async def create(
        self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Write a new object; ``FileExistsError`` if ``path`` exists."""
        self.fs.pipe_file(path, data, mode="create", **self.write_kwargs(content_type, metadata))

    async def aclose(self) -> None:
        """Release connections (an instance made for one exit-time export)."""


@register_backend("file", "local")
class LocalBackend(Backend):
    """Local files: temp file then ``os.link``, which is atomic and fails if the name exists."""

    @classmethod
    def check_target(cls, base: str, key_template: str) -> None:
        """Path components short enough for a file name, and no file where a directory goes."""
        static = _static_prefix(base)
        parts = [p for p in static.split("/") if p] + [
            p for p in _static_prefix(key_template).split("/") if p and "{" not in p
        ]
        for part in parts:
            size = len(_utf8(part))
            if size > _NAME_MAX:
                raise ValueError(
                    f"Path component {part[:40]!r}... is {size} bytes, more than the "
                    f"{_NAME_MAX} a file name may have: shorten the URL path or the key template."
                )
        probe = static.rstrip("/") or "/"
        while not os.path.lexists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                return
            probe = parent
        if not os.path.isdir(probe):
            raise ValueError(
                f"{probe!r} is a file, so profiles cannot be written under {base!r}: "
                "choose a directory path (OTEL_EXPORTER_FSSPEC_PROFILES_URL)."
            )

    async def create(
        self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        directory = os.path.dirname(path) or "."
        tmp = os.path.join(directory, f".tmp-{os.getpid()}-{secrets.token_hex(8)}")
        # 0o666 less the umask, like any file the application writes (mkstemp would be 0o600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)
        finally:
            os.unlink(tmp)


class AsyncBackend(Backend):
    """An async filesystem: every call is awaited on its loop, so a deadline cancels it."""

    is_async = True

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _make_container(self, directory: str) -> None:
        if directory:
            await self.fs._makedirs(directory, exist_ok=True)

    async def holds(self, path: str, data: bytes) -> bool:
        try:
            return bytes(await self.fs._cat_file(path)) == data
        except FileNotFoundError:
            return False

    async def create(
        self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        kwargs = self.write_kwargs(content_type, metadata)
        await self.fs._pipe_file(path, data, mode="create", **kwargs)


@register_backend("s3", "s3a", extra="s3")
class S3Backend(AsyncBackend):
    """S3: the bucket is checked (and created) once; ``If-None-Match: *`` prevents overwrites.

    Each PutObject carries ``Content-MD5``, so the server rejects a body damaged on
    the way, and the returned ETag is checked against it where it is an MD5
    (not with SSE-KMS). s3fs's own retry loop is turned off: the exporter retries.
    """

    @classmethod
    def check_target(cls, base: str, key_template: str) -> None:
        """The bucket name as botocore checks it, before any request is sent."""
        bucket = base.split("/", 1)[0]
        if "{" not in bucket and not _S3_BUCKET.match(bucket):
            raise ValueError(
                f"Invalid S3 bucket name {bucket!r}: use 3 to 63 lower-case letters, digits, "
                "dots and hyphens (the URL is s3://BUCKET/PREFIX)."
            )

    @classmethod
    def refused_options(cls, options: Mapping[str, Any]) -> List[str]:
        """s3fs takes its own parameters, fsspec's listing-cache ones and
        ``skip_instance_cache``, and hands the rest to aiobotocore's ``AioSession``,
        which refuses any name its signature lacks."""
        try:
            from aiobotocore.session import AioSession
            from fsspec.dircache import DirCache
            from s3fs import S3FileSystem
        except ImportError:
            return []  # the missing package is reported when the filesystem is opened
        accepted = {"skip_instance_cache"}
        for init in (S3FileSystem.__init__, DirCache.__init__, AioSession.__init__):
            accepted.update(
                p.name
                for p in inspect.signature(init).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            )
        return sorted(name for name in options if name not in accepted)

    @classmethod
    def check_credentials(cls, options: Mapping[str, Any]) -> None:
        """``key`` and ``secret`` come together: botocore refuses one without the other
        (``PartialCredentialsError`` at the first request). The values are never shown."""
        given = [name for name in ("key", "secret") if options.get(name)]
        if len(given) == 1:
            (missing,) = {"key", "secret"} - set(given)
            raise ValueError(
                f"the storage options give '{given[0]}' without '{missing}': give key and "
                "secret together, or neither to use the environment's credentials "
                "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...)"
            )

    @classmethod
    def default_options(cls, options: Mapping[str, Any]) -> Dict[str, Any]:
        """botocore's checksums ``when_required`` unless the options set them."""
        out = dict(options)
        config = dict(out.get("config_kwargs") or {})
        for key, value in WHEN_REQUIRED.items():
            config.setdefault(key, value)
        out["config_kwargs"] = config
        return out

    @classmethod
    def prepare_options(cls, options: Mapping[str, Any], timeout_s: float) -> Dict[str, Any]:
        """Public objects refused; botocore's connect/read timeouts derived from the export
        timeout and its own retries turned off: the exporter retries, within its deadline."""
        out = dict(options)
        extra = out.get("s3_additional_kwargs") or {}
        acl = str(extra.get("ACL", "")).lower()
        if acl in _PUBLIC_ACLS or any(k.startswith("Grant") for k in extra):
            raise ValueError(
                f"Profiles are never made public: remove ACL={extra.get('ACL')!r} / Grant* "
                "from s3_additional_kwargs (use a bucket policy if others must read them)."
            )
        config = dict(out.get("config_kwargs") or {})
        config.setdefault("connect_timeout", max(min(timeout_s, 5.0), 0.1))
        config.setdefault("read_timeout", max(timeout_s, 0.1))
        config.setdefault("retries", {"total_max_attempts": 1})
        out["config_kwargs"] = config
        return out

    def __init__(self, fs: Any) -> None:
        super().__init__(fs)
        fs.retries = 1

    def container(self, path: str) -> str:
        return path.split("/", 1)[0]

    async def _make_container(self, bucket: str) -> None:
        # head_bucket, not fs.exists(): exists() hides network errors and denials as "missing"
        try:
            await self.fs._call_s3("head_bucket", Bucket=bucket)
            exists = True
        except FileNotFoundError:
            exists = False
        except PermissionError as exc:
            raise _with_remedy(
                PermissionError(f"Access to bucket '{bucket}' denied ({exc})"),
                "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the "
                "exporter's access_key / secret_key) and that they may write to the bucket "
                "(s3:PutObject)",
            ) from exc
        if not exists:
            params: Dict[str, Any] = {"Bucket": bucket}
            region = (getattr(self.fs, "client_kwargs", None) or {}).get("region_name")
            if region and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                await self.fs._call_s3("create_bucket", **params)
            except PermissionError as exc:
                raise _with_remedy(
                    PermissionError(
                        f"Bucket '{bucket}' does not exist and these credentials may not "
                        f"create it ({exc})"
                    ),
                    "create the bucket, or grant s3:CreateBucket",
                ) from exc
            except FileExistsError:
                pass  # created meanwhile by another process
            self.fs.invalidate_cache(bucket)

    def write_kwargs(self, content_type: str, metadata: Mapping[str, str]) -> Dict[str, Any]:
        return {"ContentType": content_type, "Metadata": dict(metadata)}

    async def create(
        self, path: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        kwargs, digest = self._put_kwargs(data, content_type, metadata)
        self._check(path, await self.fs._pipe_file(path, data, mode="create", **kwargs), digest)

    def _put_kwargs(
        self, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> Tuple[Dict[str, Any], Any]:
        kwargs = self.write_kwargs(content_type, metadata)
        digest = hashlib.md5(data, usedforsecurity=False) if len(data) < _SINGLE_PUT_LIMIT else None
        if digest is not None:
            kwargs["ContentMD5"] = base64.b64encode(digest.digest()).decode()
        return kwargs, digest

    def _check(self, path: str, out: Any, digest: Any) -> None:
        etag = str(out.get("ETag", "")).strip('"') if isinstance(out, dict) else ""
        plain_etag = len(etag) == 32 and "-" not in etag and not self._kms()
        if digest is not None and plain_etag and etag != digest.hexdigest():
            raise OSError(
                f"checksum mismatch for {path}: sent MD5 {digest.hexdigest()}, server has {etag}"
            )

    def _kms(self) -> bool:
        extra = getattr(self.fs, "s3_additional_kwargs", None) or {}
        return "kms" in str(extra.get("ServerSideEncryption", "")).lower()

    async def holds(self, path: str, data: bytes) -> bool:
        try:
            info = await self.fs._info(path, refresh=True)
        except FileNotFoundError:
            return False
        etag = str(info.get("ETag", "")).strip('"')
        if info.get("size") != len(data):
            return False
        if len(etag) == 32 and "-" not in etag and not self._kms():
            return etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
        return await super().holds(path, data)

    async def aclose(self) -> None:
        creator = getattr(self.fs, "_s3creator", None)
        if creator is not None:
            await creator.__aexit__(None, None, None)


@register_backend("gs", "gcs", extra="gcs")
class GcsBackend(AsyncBackend):
    """Google Cloud Storage: content type and metadata as gcsfs names them."""

    def write_kwargs(self, content_type: str, metadata: Mapping[str, str]) -> Dict[str, Any]:
        return {"content_type": content_type, "metadata": dict(metadata)}


@register_backend("az", "abfs", "abfss", "adl", extra="azure")
class AzureBackend(AsyncBackend):
    """Azure Blob Storage and Data Lake (adlfs): the generic async behaviour."""


def backend_for(fs: Any) -> Backend:
    """The backend for filesystem ``fs``: the class registered for one of its protocols."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    for protocol in protocols:
        if protocol in _REGISTRY:
            return _REGISTRY[protocol](fs)
    return backend_class("", bool(getattr(fs, "async_impl", False)))(fs)
