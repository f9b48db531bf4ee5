"""``otel-profiling merge``: many profiles (one per container, per window...) into one.

Profiles are fetched and parsed one at a time and added into a single call
tree, so memory is bounded by the merged tree plus the largest single input,
not by the sum of the inputs.
"""

from __future__ import annotations

import argparse
import posixpath
from typing import Any, Dict, List, Optional, Tuple

from otel_profiling.cli.common import (
    CliError,
    Progress,
    open_url,
    print_json,
    storage_error,
    want_progress,
)
from otel_profiling.cli.convert import encode, output_format, write_output
from otel_profiling.cli.listing import parse_kinds
from otel_profiling.cli.ls import add_filters, entries_for
from otel_profiling.formats.calltree import Frame, new_root
from otel_profiling.formats.merge import merge_into
from otel_profiling.formats.readers import ProfileFormatError, ProfileTree, read_profile
from otel_profiling.formats.writers import WRITE_FORMATS
from otel_profiling.redact import redact_url


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "merge",
        parents=[common],
        help="aggregate many profiles into one",
        description="Merge the profiles under each SOURCE (a URL prefix or directory, "
        "filtered like `ls`; or single profile files) into one profile. Inputs are "
        "streamed one at a time: memory is bounded by the merged result.",
        epilog="example: otel-profiling merge s3://bucket/profiles --kind CPU_PROFILE "
        "--since 1h -o merged.pprof",
    )
    parser.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="URL prefix, directory or file"
    )
    add_filters(parser)
    parser.add_argument("-o", "--output", required=True, help="file to write; '-' for stdout")
    parser.add_argument("--to", choices=WRITE_FORMATS, help="output format (default: from -o)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: when stdout and stderr are terminals)",
    )
    parser.set_defaults(handler=run)


Input = Tuple[str, Any, str]  # (display name, filesystem, path)


def _inputs(args: argparse.Namespace) -> List[Input]:
    inputs: List[Input] = []
    kinds = set()
    for source in args.sources:
        url = source  # a local path works too: fsspec opens it as file://
        fs, path = open_url(url, args.storage_options)
        try:
            directory = fs.isdir(path)
        except OSError as exc:
            raise storage_error(exc, source) from None
        if directory:
            for entry in entries_for(args, url, metadata=bool(args.service)):
                inputs.append((entry.url, fs, entry.path))
                kinds.add(entry.kind)
        elif fs.exists(path):
            inputs.append((source, fs, path))
        else:
            raise CliError(f"{redact_url(source)} does not exist: check the path or URL")
    if len(kinds) > 1 and not parse_kinds(args.kind):
        raise CliError(
            f"the sources hold several kinds ({', '.join(sorted(kinds))}): pick one with --kind"
        )
    if not inputs:
        raise CliError("no profile matched: check the URL and the --kind/--since/--until filters")
    return inputs


def run(args: argparse.Namespace) -> int:
    fmt = output_format(args.to, args.output)
    inputs = _inputs(args)
    merged: Optional[ProfileTree] = None
    frames: Dict[Frame, Frame] = {}
    start_ns: Optional[int] = None
    end_ns = 0
    progress = Progress("merging", len(inputs), want_progress(args.progress), items=True)
    for name, fs, path in inputs:
        try:
            data = fs.cat_file(path)
        except OSError as exc:
            raise storage_error(exc, name) from None
        try:
            tree = read_profile(data, path)
        except ProfileFormatError as exc:
            raise CliError(f"{posixpath.basename(path)}: {exc}") from None
        del data
        if merged is None:
            merged = ProfileTree(new_root(), tree.unit, "merged")
        elif tree.unit != merged.unit:
            raise CliError(
                f"{posixpath.basename(path)} holds {tree.unit} but earlier inputs hold "
                f"{merged.unit}: merge one kind at a time (--kind)"
            )
        merge_into(merged.root, tree.root, frames)
        if tree.start_ns:
            start_ns = tree.start_ns if start_ns is None else min(start_ns, tree.start_ns)
            end_ns = max(end_ns, tree.start_ns + tree.duration_ns)
        del tree
        progress.update(1, posixpath.basename(path))
    progress.finish()
    assert merged is not None
    merged.start_ns = start_ns or 0
    merged.duration_ns = max(end_ns - merged.start_ns, 0) if start_ns else 0
    data = encode(merged, fmt)
    write_output(args.output, data)
    if args.json:
        print_json(
            {
                "output": args.output,
                "format": fmt,
                "inputs": len(inputs),
                "unit": merged.unit,
                "total": merged.total,
                "samples": merged.root.total_count(),
                "size": len(data),
            }
        )
    elif args.output != "-":
        print(f"{args.output}: {len(inputs)} profiles merged")
    return 0
