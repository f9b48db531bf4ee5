"""``otel-profiling ls URL``: the profiles under a URL, one line each, sorted by time."""

from __future__ import annotations

import argparse

from otel_profiling.cli.common import human_size, print_json
from otel_profiling.cli.listing import Entry
from otel_profiling.cli.sources import add_filters, entries, filters_from_args


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "ls",
        parents=[common],
        help="list the profiles under a URL",
        description="List the profiles under URL (recursively) with kind, start time, "
        "duration, size and service, oldest first. Reads object names and metadata, "
        "never the profiles themselves.",
        epilog="example: otel-profiling ls s3://bucket/profiles --kind cpu --since 1h",
    )
    parser.add_argument("url", help="s3://bucket/prefix, file:///dir, a local directory, ...")
    add_filters(parser)
    parser.add_argument(
        "--no-metadata", action="store_true", help="skip the metadata requests (faster on S3)"
    )
    parser.set_defaults(handler=run)


def _duration(entry: Entry) -> str:
    return "-" if entry.duration_ms is None else f"{entry.duration_ms / 1000:.1f}s"


def run(args: argparse.Namespace) -> int:
    found = entries(args.url, filters_from_args(args), args.storage_options, not args.no_metadata)
    if args.json:
        print_json([e.as_json() for e in found])
        return 0
    rows = [("KIND", "START (UTC)", "DURATION", "SIZE", "SERVICE", "KEY")]
    for e in found:
        start = e.start_time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        rows.append((e.kind, start, _duration(e), human_size(e.size), e.service or "-", e.key))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        )
    if not found:
        print("(no profiles)")
    return 0
