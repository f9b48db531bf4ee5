"""``otel-profiling convert IN OUT --to FORMAT``: between the project's profile formats."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from otel_profiling.cli.common import CliError, check_stdout, print_json, write_file
from otel_profiling.cli.view import add_source_format, load_tree
from otel_profiling.formats import ProfileTree, write_profile
from otel_profiling.formats.registry import output_format as format_for_output
from otel_profiling.formats.registry import tree_formats


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "convert",
        parents=[common],
        help=f"convert a profile to {', '.join(tree_formats())}",
        description="Convert a profile file or URL to another format. The output format "
        "comes from --to, else from OUT's extension. Sample types travel with the data: a "
        "wall-clock profile stays wall-clock.",
        epilog="example: otel-profiling convert app.cpuprofile app.pprof --to pprof",
    )
    parser.add_argument("input", help="a profile file or URL")
    parser.add_argument("output", help="file to write; '-' for stdout")
    parser.add_argument("--to", choices=tree_formats(), help="output format")
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
    except ValueError as exc:
        raise CliError(str(exc)) from None


def write_output(output: str, data: bytes) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_file(output, data)


def run(args: argparse.Namespace) -> int:
    check_stdout(args.output, args.json)
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
                "measure": tree.measure,
                "total": tree.total,
                "samples": tree.samples,
                "size": len(data),
            }
        )
    elif args.output != "-":
        print(args.output)
    return 0
