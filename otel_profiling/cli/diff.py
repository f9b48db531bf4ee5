"""``otel-profiling diff BEFORE AFTER``: what changed between two sets of profiles.

Each side (a URL prefix, directory, glob or file, filtered like ``ls``) is
merged as ``merge`` does, here or on Dask, and normalised to shares of its
own total; the sides are compared per stack (a differential flame graph) and
per function (``--json``, ``--top``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

from otel_profiling.cli.aggregate import MEASURES, PICK_ONE_MEASURE
from otel_profiling.cli.cluster import add_cluster_options
from otel_profiling.cli.collect import Collected, ProfileSet, collect, report_failures
from otel_profiling.cli.common import EXIT_PARTIAL, CliError, print_json, write_file
from otel_profiling.cli.compare import FunctionChange, compare_functions, union_tree
from otel_profiling.cli.diffgraph import render_diff_html, render_diff_svg
from otel_profiling.cli.flamegraph import format_value
from otel_profiling.cli.merge import add_progress_option
from otel_profiling.cli.sources import add_filters, filters_from_args
from otel_profiling.formats import ProfileTree
from otel_profiling.profile import iso_millis
from otel_profiling.redact import redact_url

SIDES = ("before", "after")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "diff",
        parents=[common],
        help="compare two sets of profiles (before and after a deploy, two hours...)",
        description="Merge the profiles of BEFORE and of AFTER (each a URL prefix, directory, "
        "glob or file, filtered like `ls`), normalise each to shares of its total and compare "
        "them: a differential flame graph (widths: AFTER; red grew, blue shrank, purple only "
        "in AFTER; stacks only in BEFORE on request), --json per function, --top N as a "
        "table. The filters apply to both sides; --before-*/--after-* to one.",
        epilog="examples: otel-profiling diff s3://bucket/checkout/1.4.2 "
        "s3://bucket/checkout/1.5.0 --kind cpu -o deploy.html;  otel-profiling diff "
        "s3://bucket/checkout s3://bucket/checkout --before-since 2h --before-until 1h "
        "--after-since 1h --top 20",
    )
    parser.add_argument("before", metavar="BEFORE", help="URL prefix, directory, glob or file")
    parser.add_argument("after", metavar="AFTER", help="URL prefix, directory, glob or file")
    add_filters(parser)
    group = parser.add_argument_group("one side's filters")
    for side in SIDES:
        upper = side.upper()
        group.add_argument(
            f"--{side}-since", metavar="TIME", help=f"{upper}'s profiles started at or after"
        )
        group.add_argument(
            f"--{side}-until", metavar="TIME", help=f"{upper}'s profiles started at or before"
        )
        group.add_argument(
            f"--{side}-where",
            action="append",
            metavar="KEY=VALUE",
            help=f"metadata or attribute filter for {upper} only; repeatable",
        )
    parser.add_argument(
        "-o",
        "--output",
        help="page to write (default: diff.html, or diff.svg with --svg; none with --json or "
        "--top unless given); '-' for stdout",
    )
    parser.add_argument("--svg", action="store_true", help="write a static SVG instead of HTML")
    parser.add_argument(
        "--top", type=int, metavar="N", help="print the N largest changes by function as a table"
    )
    parser.add_argument("--title", help="page title (default: BEFORE → AFTER)")
    add_progress_option(parser)
    add_cluster_options(parser)
    parser.set_defaults(handler=run)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.top is not None and args.json:
        raise CliError("--top and --json both print on stdout: give one of them")
    if args.top is not None and args.top < 1:
        raise CliError(f"--top {args.top}: give a number of rows, 1 or more")
    if args.output == "-" and (args.json or args.top is not None):
        raise CliError("-o - and --json/--top would both print on stdout: write the page to a file")


def _check_comparable(before: Collected, after: Collected) -> None:
    kinds = [c.aggregate.kind or "" for c in (before, after)]
    if kinds[0] != kinds[1]:
        raise CliError(
            f"BEFORE holds {MEASURES.get(kinds[0], kinds[0])} and AFTER holds "
            f"{MEASURES.get(kinds[1], kinds[1])}: {PICK_ONE_MEASURE}"
        )
    units = [c.aggregate.unit for c in (before, after)]
    if units[0] != units[1]:
        raise CliError(
            f"BEFORE is measured in {units[0]} and AFTER in {units[1]}: {PICK_ONE_MEASURE}"
        )


def _side_json(collected: Collected, tree: ProfileTree) -> Dict[str, Any]:
    aggregate = collected.aggregate
    start = tree.start_ns or None
    return {
        "sources": [redact_url(s) for s in collected.profile_set.sources],
        "profiles": aggregate.merged,
        "failed": [vars(f) for f in aggregate.failures],
        "kind": aggregate.kind,
        "unit": tree.unit,
        "total": tree.total,
        "total_text": format_value(tree.total, tree.unit),
        "samples": tree.samples,
        "start": _iso(start),
        "end": _iso(start + tree.duration_ns if start else None),
    }


def _iso(ns: Optional[int]) -> Optional[str]:
    if not ns:
        return None
    from datetime import datetime, timezone

    return iso_millis(datetime.fromtimestamp(ns / 1e9, tz=timezone.utc))


def _describe(label: str, collected: Collected, tree: ProfileTree) -> str:
    sources = ", ".join(redact_url(s) for s in collected.profile_set.sources)
    count = collected.aggregate.merged
    return (
        f"{label.ljust(6)} {sources}: {count} profile{'s' if count != 1 else ''}, "
        f"{format_value(tree.total, tree.unit)}"
    )


def _table(changes: Sequence[FunctionChange], limit: int, heading: List[str]) -> str:
    rows = [("BEFORE", "AFTER", "CHANGE", "FUNCTION", "FILE")]
    for change in changes[:limit]:
        rows.append(
            (
                f"{100 * change.before:.2f}%",
                f"{100 * change.after:.2f}%",
                f"{100 * change.delta:+.2f} pts",
                change.name,
                change.file or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = list(heading) + [""]
    for row in rows:
        numbers = "  ".join(cell.rjust(width) for cell, width in zip(row[:3], widths, strict=False))
        lines.append(f"{numbers}  {row[3].ljust(widths[3])}  {row[4]}")
    return "\n".join(lines) + "\n"


def _write_page(args: argparse.Namespace, text: str) -> str:
    target = args.output or ("diff.svg" if args.svg else "diff.html")
    if target == "-":
        sys.stdout.write(text)
        return target
    write_file(target, text.encode("utf-8"))
    return target


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    sets = [
        ProfileSet(side.upper(), [getattr(args, side)], filters_from_args(args, side))
        for side in SIDES
    ]
    before, after = collect(args, sets)
    failed = report_failures([before, after])
    old, new = before.aggregate.result(), after.aggregate.result()
    _check_comparable(before, after)
    for label, tree in (("BEFORE", old), ("AFTER", new)):
        if tree.total <= 0:
            raise CliError(f"{label}'s profiles hold nothing (total 0): nothing to compare")
    changes = compare_functions(old, new)
    heading = [_describe("BEFORE", before, old), _describe("AFTER", after, new)]
    page_wanted = args.output is not None or not (args.json or args.top is not None)
    target = None
    if page_wanted:
        union = union_tree(old.root, new.root)
        title = args.title or f"{redact_url(args.before)} → {redact_url(args.after)}"
        subtitle = " · ".join(heading)
        text = (
            render_diff_svg(union, title, subtitle)
            if args.svg
            else render_diff_html(union, changes, title, subtitle)
        )
        target = _write_page(args, text)
    if args.json:
        print_json(
            {
                "before": _side_json(before, old),
                "after": _side_json(after, new),
                "functions": [change.as_json() for change in changes],
            }
        )
    elif args.top is not None:
        sys.stdout.write(_table(changes, args.top, heading))
    elif target != "-":
        print(target)
    return EXIT_PARTIAL if failed else 0
