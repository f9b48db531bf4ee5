"""``otel-profiling view``: any profile as a self-contained HTML flame graph (or a static SVG)."""

from __future__ import annotations

import argparse
import sys

from otel_profiling.cli.common import (
    CliError,
    print_json,
    read_source,
    source_name,
    write_file,
)
from otel_profiling.cli.flamegraph import format_value, render_html, render_svg
from otel_profiling.formats import ProfileFormatError, ProfileTree, read_profile
from otel_profiling.formats.format import EmptyProfileError, NoReadableFormatError
from otel_profiling.formats.registry import readable_formats


def load_tree(source: str, args: argparse.Namespace) -> ProfileTree:
    """Read and parse a profile from a file or URL; format from ``--from``, name or bytes."""
    data = read_source(source, args.storage_options)
    try:
        return read_profile(data, source_name(source), getattr(args, "source_format", None))
    except EmptyProfileError as exc:
        raise CliError(f"{source_name(source)}: {exc}") from None
    except ProfileFormatError as exc:
        listed = isinstance(exc, NoReadableFormatError)  # its message lists them already
        formats = "" if listed else f": {', '.join(readable_formats())}"
        raise CliError(
            f"{source_name(source)}: {exc} (pass --from FORMAT if known{formats})"
        ) from None


def add_source_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source_format",
        choices=readable_formats(),
        help="the input's format (default: from the extension, else from the content)",
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "view",
        parents=[common],
        help="render a profile as an HTML flame graph",
        description=f"Render a profile ({', '.join(readable_formats())}) as a self-contained "
        "HTML flame graph with search, click-to-zoom and a top-functions table; it opens "
        "offline. CPU profiles are shown in time (wall or CPU time, as recorded), heap "
        "profiles in bytes.",
        epilog="example: otel-profiling view profiles/CPU_PROFILE-...Z.cpuprofile -o cpu.html",
    )
    parser.add_argument("source", help="a profile file, or its URL (s3://bucket/prefix/KEY)")
    parser.add_argument("-o", "--output", help="file to write (default: NAME.html); '-' for stdout")
    parser.add_argument("--svg", action="store_true", help="write a static SVG instead of HTML")
    parser.add_argument("--title", help="page title (default: the profile's name)")
    add_source_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    tree = load_tree(args.source, args)
    name = source_name(args.source) or "profile"
    title = args.title or name
    text = render_svg(tree, title) if args.svg else render_html(tree, title)
    suffix = ".svg" if args.svg else ".html"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    target = write_file(args.output or (name + suffix), text.encode("utf-8"))
    if args.json:
        print_json(
            {
                "output": str(target),
                "format": tree.format,
                "unit": tree.unit,
                "measure": tree.measure,
                "measure_text": tree.measure_label,
                "total": tree.total,
                "total_text": format_value(tree.total, tree.unit),
            }
        )
    else:
        print(target)
    return 0
