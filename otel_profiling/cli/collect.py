"""Reading the profiles of ``merge`` (one set) and ``diff`` (two): here, or on Dask.

Without a cluster each set is listed, then its objects are read, parsed and
added one at a time (memory: the sum plus one input). With ``--scheduler`` or
``--workers`` the same work runs on the cluster (see ``cluster``). Either way
an object that cannot be read is reported and left out, and the rest merged.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, TextIO

from otel_profiling.cli.aggregate import Aggregate, merge_objects
from otel_profiling.cli.cluster import cluster_client, merge_on_cluster, select_on_cluster
from otel_profiling.cli.common import PROG, Progress, is_url, want_progress
from otel_profiling.cli.sources import Filters, Selection, select

MAX_REPORTED = 20
"""Failed objects named on stderr; ``--json`` lists them all."""


@dataclass
class ProfileSet:
    """What one set holds: its label, its SOURCE arguments and its filters."""

    label: str
    sources: Sequence[str]
    filters: Filters


@dataclass
class Collected:
    """A set's objects and their sum."""

    profile_set: ProfileSet
    selection: Selection
    aggregate: Aggregate


def _merge_here(urls: List[str], args: argparse.Namespace, label: str) -> Aggregate:
    progress = Progress(label, len(urls), want_progress(args.progress), items=True)
    aggregate = merge_objects(
        urls,
        args.storage_options,
        done=lambda url: progress.update(1, posixpath.basename(url)),
    )
    progress.finish()
    return aggregate


def collect(args: argparse.Namespace, sets: Sequence[ProfileSet]) -> List[Collected]:
    """List and merge each set, on the Dask cluster the arguments name if any."""
    options = args.storage_options
    with cluster_client(args) as client:
        if client is None:
            selections = [select(s.sources, s.filters, options) for s in sets]
            aggregates = [
                _merge_here(selection.urls, args, s.label)
                for s, selection in zip(sets, selections, strict=True)
            ]
        else:
            # a worker's working directory may differ: local paths go absolute
            sources = [[s if is_url(s) else os.path.abspath(s) for s in p.sources] for p in sets]
            selections = select_on_cluster(client, sources, [s.filters for s in sets], options)
            aggregates = merge_on_cluster(
                client,
                [selection.urls for selection in selections],
                options,
                want_progress(args.progress),
            )
    return [
        Collected(s, sel, agg) for s, sel, agg in zip(sets, selections, aggregates, strict=True)
    ]


def report_failures(collected: Sequence[Collected], stream: Optional[TextIO] = None) -> int:
    """Name the objects left out on stderr; returns how many there were."""
    out = stream or sys.stderr
    failures = [f for c in collected for f in c.aggregate.failures]
    for failure in failures[:MAX_REPORTED]:
        out.write(f"{PROG}: warning: skipped {failure.url}: {failure.error}\n")
    if len(failures) > MAX_REPORTED:
        out.write(f"{PROG}: warning: ... and {len(failures) - MAX_REPORTED} more\n")
    return len(failures)
