"""The ``otel-profiling`` command: run, ls, get, view, convert, merge, diff, trigger.

Exit codes: 0 success, 1 failure (one line on stderr saying what to do),
2 usage error, 3 partial: ``merge``/``diff`` left out inputs they could not
read (each named on stderr) and used the rest. ``--json`` prints
machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from otel_profiling.cli import convert, diff, get, ls, merge, run, trigger, view
from otel_profiling.cli.common import PROG, CliError, parse_storage_options
from otel_profiling.version import __version__


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    storage = common.add_argument_group("storage")
    storage.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="fsspec storage option (e.g. anon=true, client_kwargs={...}); repeatable",
    )
    storage.add_argument("--endpoint-url", help="S3-compatible endpoint (else AWS_ENDPOINT_URL)")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Profile Python programs and work with the profiles they export: list, "
        "download, view as flame graphs, convert, merge and compare.",
        epilog="Run `otel-profiling COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and otel-profiling's debug logs"
    )
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for module in (run, ls, get, view, convert, merge, diff, trigger):
        module.register(sub, common)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    if args.debug:
        # this package's loggers only: the storage clients' debug logs print each
        # request's headers, with the session token and the signature
        logging.getLogger("otel_profiling").setLevel(logging.DEBUG)
    try:
        args.storage_options = parse_storage_options(
            getattr(args, "storage_option", None), getattr(args, "endpoint_url", None)
        )
        return int(args.handler(args))
    except CliError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 1
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        sys.stderr.write(
            f"{PROG}: error: {type(exc).__name__}: {message} (rerun with --debug for details)\n"
        )
        return 1
