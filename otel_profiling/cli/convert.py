"""``otel-profiling convert IN OUT --to FORMAT``: between the project's profile formats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from otel_profiling.cli.common import CliError, print_json
from otel_profiling.cli.view import add_source_format, load_tree
from otel_profiling.formats.readers import ProfileTree
from otel_profiling.formats.writers import (
    WRITE_FORMATS,
    WriterUnavailableError,
    format_for_output,
    write_profile,
)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "convert",
        parents=[common],
        help="convert a profile to pprof, cpuprofile, folded or speedscope",
        description="Convert a profile file or URL to another format. The output format "
        "comes from --to, else from OUT's extension (.pprof, .cpuprofile, .folded, "
        ".speedscope.json).",
        epilog="example: otel-profiling convert app.cpuprofile app.pprof --to pprof",
    )
    parser.add_argument("input", help="a profile file or URL")
    parser.add_argument("output", help="file to write; '-' for stdout")
    parser.add_argument("--to", choices=WRITE_FORMATS, help="output format")
    add_source_format(parser)
    parser.set_defaults(handler=run)


def output_format(to: Optional[str], output: str) -> str:
    if to:
        return to
    try:
        return format_for_output(output)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def encode(tree: ProfileTree, fmt: str) -> bytes:
    try:
        return write_profile(tree, fmt)
    except (WriterUnavailableError, ValueError) as exc:
        raise CliError(str(exc)) from None


def write_output(output: str, data: bytes) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    fmt = output_format(args.to, args.output)
    tree = load_tree(args.input, args)
    data = encode(tree, fmt)
    write_output(args.output, data)
    if args.json:
        print_json(
            {
                "output": args.output,
                "format": fmt,
                "from": tree.format,
                "unit": tree.unit,
                "total": tree.total,
                "samples": tree.root.total_count(),
                "size": len(data),
            }
        )
    elif args.output != "-":
        print(args.output)
    return 0
