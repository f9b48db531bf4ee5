"""``otel-profiling ls URL``: the profiles under a URL, one line each, sorted by time."""

from __future__ import annotations

import argparse
from typing import List

from otel_profiling.cli.common import CliError, human_size, parse_time, print_json
from otel_profiling.cli.listing import Entry, list_profiles, parse_kinds


def add_filters(parser: argparse.ArgumentParser) -> None:
    """The filters ``ls`` and ``merge`` share."""
    parser.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help="CPU_PROFILE, HEAP_PROFILE or HEAP_SNAPSHOT (or cpu, heap, snapshot); repeatable",
    )
    parser.add_argument("--since", metavar="TIME", help="started at or after: 1h, 30m, 2d or ISO")
    parser.add_argument("--until", metavar="TIME", help="started at or before: 1h, 30m or ISO")
    parser.add_argument(
        "--service", action="append", metavar="NAME", help="service.name to keep; repeatable"
    )


def entries_for(args: argparse.Namespace, url: str, metadata: bool = True) -> List[Entry]:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return list_profiles(
        url,
        args.storage_options,
        kinds=parse_kinds(args.kind),
        since=since,
        until=until,
        services=args.service,
        metadata=metadata or bool(args.service),
    )


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
    entries = entries_for(args, args.url, metadata=not args.no_metadata)
    if args.json:
        print_json([e.as_json() for e in entries])
        return 0
    rows = [("KIND", "START (UTC)", "DURATION", "SIZE", "SERVICE", "KEY")]
    for e in entries:
        start = e.start_time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        rows.append((e.kind, start, _duration(e), human_size(e.size), e.service or "-", e.key))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        )
    if not entries:
        print("(no profiles)")
    return 0
