"""``otel-profiling merge``: many profiles (one per container, per window...) into one.

Profiles are fetched and parsed one at a time and added into a single call
tree, so memory is bounded by the merged tree plus the largest single input,
not by the sum of the inputs. With ``--scheduler``/``--workers`` the same
merge runs on a Dask cluster and gives the same result.
"""

from __future__ import annotations

import argparse

from otel_profiling.cli.cluster import add_cluster_options
from otel_profiling.cli.collect import ProfileSet, collect, report_failures
from otel_profiling.cli.common import EXIT_PARTIAL, check_stdout, print_json
from otel_profiling.cli.convert import encode, output_format, write_output
from otel_profiling.cli.sources import add_filters, filters_from_args
from otel_profiling.formats.registry import tree_formats


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: when stdout and stderr are terminals)",
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "merge",
        parents=[common],
        help="aggregate many profiles into one",
        description="Merge the profiles under each SOURCE (a URL prefix or directory, "
        "filtered like `ls`; a glob pattern; or single profile files) into one profile. "
        "Inputs are streamed one at a time: memory is bounded by the merged result. An input "
        "that cannot be read is named on stderr and left out (exit code 3).",
        epilog="example: otel-profiling merge s3://bucket/profiles --kind CPU_PROFILE "
        "--since 1h -o merged.pprof",
    )
    parser.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="URL prefix, directory, glob or file"
    )
    add_filters(parser)
    parser.add_argument("-o", "--output", required=True, help="file to write; '-' for stdout")
    parser.add_argument("--to", choices=tree_formats(), help="output format (default: from -o)")
    add_progress_option(parser)
    add_cluster_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_stdout(args.output, args.json)
    fmt = output_format(args.to, args.output)
    (merged,) = collect(args, [ProfileSet("merging", args.sources, filters_from_args(args))])
    aggregate = merged.aggregate
    failed = report_failures([merged])
    tree = aggregate.result()
    data = encode(tree, fmt)
    write_output(args.output, data)
    if args.json:
        print_json(
            {
                "output": args.output,
                "format": fmt,
                "inputs": aggregate.inputs,
                "merged": aggregate.merged,
                "failed": [vars(f) for f in aggregate.failures],
                "unit": tree.unit,
                "total": tree.total,
                "samples": tree.samples,
                "size": len(data),
            }
        )
    elif args.output != "-":
        note = f" ({failed} left out, named above)" if failed else ""
        print(f"{args.output}: {aggregate.merged} profiles merged{note}")
    return EXIT_PARTIAL if failed else 0
