"""``otel-profiling get URL/KEY``: download one profile, streaming, with a progress bar."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from otel_profiling.cli.common import (
    CliError,
    Progress,
    check_stdout,
    is_url,
    make_parent,
    open_url,
    print_json,
    source_name,
    storage_error,
    want_progress,
    write_error,
)
from otel_profiling.redact import redact_url

CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 1 << 20


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "get",
        parents=[common],
        help="download a profile",
        description="Download the profile at URL/KEY to a file (default: the key's name in "
        "the current directory). A progress bar is drawn on stderr for large objects when "
        "stdout is a terminal.",
        epilog="example: otel-profiling get "
        "s3://bucket/profiles/CPU_PROFILE-2026-11-24T10:15:30.123Z.cpuprofile -o app.cpuprofile",
    )
    parser.add_argument("url", help="the profile's URL (as printed by `otel-profiling ls`)")
    parser.add_argument("-o", "--output", help="file to write; '-' for stdout")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stdout and stderr are terminals)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_stdout(args.output, args.json)
    if not is_url(args.url):
        raise CliError(
            f"{args.url!r} is not a URL: give e.g. s3://bucket/prefix/KEY or file:///dir/KEY"
        )
    fs, path = open_url(args.url, args.storage_options)
    try:
        info = fs.info(path)
    except OSError as exc:
        raise storage_error(exc, args.url) from None
    if info.get("type") == "directory":
        raise CliError(
            f"{redact_url(args.url)} is a prefix, not a profile: list it with `otel-profiling ls`"
        )
    size = int(info.get("size") or 0)
    name = source_name(args.url)
    to_stdout = args.output == "-"
    target = Path(args.output or name)
    # a device or a pipe (/dev/stdout, a FIFO) is written into, never replaced by a file
    into = not to_stdout and target.exists() and not target.is_file()
    if into and target.is_dir():
        raise CliError(f"{target} is a directory: give a file name with -o")
    if not to_stdout and not into and target.exists() and not args.force:
        raise CliError(f"{target} already exists: pass --force to overwrite, or -o another name")
    progress = Progress(
        name, size, want_progress(args.progress) and (args.progress or size >= PROGRESS_MIN_BYTES)
    )
    written = 0
    tmp = None
    try:
        if to_stdout:
            out = sys.stdout.buffer
        elif into:
            try:
                out = open(target, "wb")  # noqa: SIM115 - closed below, with the others
            except OSError as exc:
                raise write_error(target, exc) from None
        else:
            make_parent(target)
            try:
                fd, tmp = tempfile.mkstemp(prefix=".otel-profiling-", dir=str(target.parent))
            except OSError as exc:
                raise write_error(target, exc) from None
            out = os.fdopen(fd, "wb")
        with fs.open(path, "rb", block_size=CHUNK) as source:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise write_error(target, exc) from None
                written += len(chunk)
                progress.update(len(chunk))
        try:
            out.flush()
            if into:
                out.close()
            if tmp is not None:
                out.close()
                os.chmod(tmp, 0o666 & ~_umask())  # as open() would: mkstemp makes it 0600
                os.replace(tmp, target)
                tmp = None
        except OSError as exc:
            raise write_error(target, exc) from None
    except OSError as exc:
        raise storage_error(exc, args.url) from None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    progress.finish()
    if written != size:
        raise CliError(f"downloaded {written} bytes of {size}: the object changed, try again")
    if args.json:
        print_json(
            {
                "url": redact_url(args.url),
                "output": str(target) if not to_stdout else "-",
                "size": written,
            }
        )
    elif not to_stdout and not into:  # a pipe or device gets the profile only
        print(target)
    return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
