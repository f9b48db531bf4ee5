"""What every subcommand shares: errors, storage access, times, sizes and progress."""

from __future__ import annotations

import json
import posixpath
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Tuple
from urllib.parse import urlsplit

from otel_profiling.redact import redact_url

PROG = "otel-profiling"

EXIT_PARTIAL = 3
"""Exit code of ``merge``/``diff`` when some inputs could not be read and were left out."""


class CliError(Exception):
    """A failure to report on one line (exit code 1); the message says what to do."""


def is_url(source: str) -> bool:
    return "://" in source


def source_name(source: str) -> str:
    """The last segment of a file path or URL; a URL's query and fragment are left out, as
    they may hold a signature (a presigned URL) and are no part of the name."""
    if is_url(source):
        source = urlsplit(source).path
    return posixpath.basename(source.rstrip("/"))


def parse_storage_options(
    pairs: Optional[List[str]], endpoint_url: Optional[str]
) -> Dict[str, Any]:
    """``OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS`` (read as the exporter reads it),
    then ``--storage-option key=value`` (JSON values parsed) and ``--endpoint-url``."""
    from otel_profiling.exporters.env import storage_options_from_env

    options: Dict[str, Any] = storage_options_from_env()
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--storage-option {pair.split('=')[0]!r} needs the form KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return options


def open_url(url: str, options: Dict[str, Any]) -> Tuple[Any, str]:
    """``(filesystem, path)`` for a URL, with a one-line fix when the backend is missing or
    refuses the storage options (found before any request is sent)."""
    import fsspec.core

    from otel_profiling.exporters.backends import (
        backend_class,
        default_options,
        missing_backend_message,
        normalize_scheme,
    )

    url, protocol = normalize_scheme(url)
    kwargs = default_options(protocol, options)  # the defaults the exporter is configured with
    backend = backend_class(protocol)
    refused = backend.refused_options(kwargs)
    if refused:  # option names are no secret; their values are never shown
        raise CliError(
            f"check the --storage-option names ({', '.join(sorted(options))}): the storage "
            f"backend for {protocol}:// does not take {', '.join(refused)}"
        )
    try:
        backend.check_credentials(kwargs)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if protocol not in ("file", "local"):
        kwargs.setdefault("skip_instance_cache", True)
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:  # ValueError: a scheme fsspec does not know
        raise CliError(missing_backend_message(protocol, exc)) from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **kwargs)
    except ImportError as exc:
        raise CliError(missing_backend_message(protocol, exc)) from None
    except ValueError as exc:
        raise CliError(f"cannot open {redact_url(url)}: {exc}") from None
    return fs, path


def check_stdout(output: Optional[str], json_wanted: bool) -> None:
    """Refuse ``-o -`` with ``--json``: the JSON would follow the profile's bytes on stdout."""
    if output == "-" and json_wanted:
        raise CliError(
            "-o - and --json would both print on stdout: write the profile to a file, "
            "or leave out --json"
        )


def write_file(path: str, data: bytes) -> Path:
    """Write a local output file, creating its missing parent directories (``-o
    reports/today/cpu.html``); a failure is one line naming the path and the reason."""
    target = Path(path)
    make_parent(target)
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise write_error(target, exc) from None
    return target


def make_parent(target: Path) -> None:
    """Create the missing directories above ``target``, or say why they cannot be."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # despite exist_ok: a file, not a directory, is in the way
        raise CliError(f"cannot write {target}: {target.parent} is not a directory") from None
    except OSError as exc:
        raise write_error(target, exc) from None


def write_error(target: Path, exc: OSError) -> CliError:
    """A failure to write a local file: no fault of the storage or its credentials."""
    return CliError(f"cannot write {target}: {exc.strerror or exc}")


def storage_error(exc: BaseException, url: str) -> CliError:
    """An ``OSError`` from storage as a one-line message that names the fix."""
    where = redact_url(url)
    if isinstance(exc, FileNotFoundError):
        return CliError(f"{where} does not exist: check the URL (list with `otel-profiling ls`)")
    if isinstance(exc, PermissionError):
        return CliError(
            f"access to {where} denied: check the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_PROFILE, ...) and that they may read it"
        )
    return CliError(f"cannot read {where}: {exc}")


def read_source(source: str, options: Dict[str, Any]) -> bytes:
    """The bytes of a local file or of an object at a URL."""
    if not is_url(source):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise CliError(f"{source} does not exist: give a profile file or a URL") from None
        except IsADirectoryError:
            raise CliError(f"{source} is a directory: give one profile file") from None
        except OSError as exc:
            raise CliError(f"cannot read {source}: {exc.strerror or exc}") from None
    fs, path = open_url(source, options)
    prefix = CliError(
        f"{redact_url(source)} is a prefix, not a profile: list it with `otel-profiling ls`"
    )
    try:
        return bytes(fs.cat_file(path))
    except IsADirectoryError:
        raise prefix from None
    except FileNotFoundError as exc:
        # an object store has no directories: a prefix is "not found" as an object
        if _is_prefix(fs, path):
            raise prefix from None
        raise storage_error(exc, source) from None
    except OSError as exc:
        raise storage_error(exc, source) from None


def _is_prefix(fs: Any, path: str) -> bool:
    try:
        return bool(fs.isdir(path))
    except OSError:
        return False


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: Optional[datetime] = None) -> datetime:
    """``1h``/``30m``/``2d`` ago, or an ISO 8601 time (UTC when no offset is given)."""
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=float(match[1]) * _SECONDS[match[2].lower()])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use a duration ago such as 30m, 1h, 2d, "
            "or an ISO time such as 2026-11-24T10:15:30Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def print_json(value: Any, stream: TextIO = sys.stdout) -> None:
    stream.write(json.dumps(value, indent=2, default=str) + "\n")


class Progress:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, total: Optional[float], enabled: bool, *, items: bool = False):
        self.label = label
        self.total = total
        self.enabled = enabled
        self.items = items
        self.done = 0.0
        self._last = 0.0
        self._stream = sys.stderr

    def update(self, amount: float, note: str = "") -> None:
        self.done += amount
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done == self.total):
            self._last = now
            self._draw(note)

    def _draw(self, note: str = "") -> None:
        if self.items:
            amount = f"{int(self.done)}/{int(self.total or 0)}"
        else:
            amount = human_size(self.done) + (f"/{human_size(self.total)}" if self.total else "")
        bar = ""
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {share * 100:5.1f}% "
        line = f"\r{self.label} {bar}{amount} {note}"[:160]
        self._stream.write(line.ljust(80))
        self._stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()


def want_progress(flag: Optional[bool]) -> bool:
    """``--progress``/``--no-progress``; by default only for a person at a terminal.

    That is when stdout is a terminal (not a script reading it) and so is stderr,
    where the bar is drawn (a redirected log never gets one).
    """
    if flag is not None:
        return flag
    return sys.stdout.isatty() and sys.stderr.isatty()
