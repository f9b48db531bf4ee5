"""Which profiles a command reads: SOURCE arguments and the ``ls`` filters, as plain values.

``merge`` and ``diff`` resolve their sources into a list of object URLs here.
``Filters`` and ``select`` hold no open filesystem, so the same selection runs
on this machine or, as a task, on a Dask worker that has the store's
credentials.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from otel_profiling.cli.common import CliError, is_url, open_url, parse_time, storage_error
from otel_profiling.cli.listing import Entry, list_profiles, parse_kinds, parse_where
from otel_profiling.exporters.backends import normalize_scheme
from otel_profiling.redact import redact_url

_GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Filters:
    """The ``--kind``/``--since``/``--until``/``--service``/``--where`` filters."""

    kinds: Optional[Tuple[str, ...]] = None
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    services: Optional[Tuple[str, ...]] = None
    where: Tuple[Tuple[str, str], ...] = ()


def add_filters(parser: argparse.ArgumentParser) -> None:
    """The filters ``ls``, ``merge`` and ``diff`` share."""
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
    parser.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="keep objects whose metadata or attribute KEY is VALUE (e.g. profile-trigger=http, "
        "service.name=checkout, job.id=42); repeatable, all must match",
    )


def filters_from_args(args: argparse.Namespace, side: str = "") -> Filters:
    """The filters given on the command line; ``side`` (``before``/``after``) adds its own.

    A side's ``--before-since``/``--before-until`` replace the shared window and
    its ``--before-where`` pairs are added to the shared ``--where`` ones.
    """
    kinds = parse_kinds(args.kind)
    since_text = getattr(args, f"{side}_since", None) if side else None
    until_text = getattr(args, f"{side}_until", None) if side else None
    try:
        since_text = since_text or args.since
        until_text = until_text or args.until
        since = parse_time(since_text) if since_text else None
        until = parse_time(until_text) if until_text else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    where = parse_where(args.where)
    if side:
        where += parse_where(getattr(args, f"{side}_where", None))
    return Filters(
        kinds=tuple(kinds) if kinds else None,
        since=since,
        until=until,
        services=tuple(args.service) if args.service else None,
        where=where,
    )


def entries(url: str, filters: Filters, options: Dict[str, Any], metadata: bool) -> List[Entry]:
    """The profiles under a URL prefix that pass ``filters``, oldest first."""
    return list_profiles(
        url,
        options,
        kinds=filters.kinds,
        since=filters.since,
        until=filters.until,
        services=filters.services,
        where=filters.where,
        metadata=metadata,
    )


@dataclass
class Selection:
    """The objects to read, in order, as full URLs; ``kinds`` found in their names."""

    urls: List[str] = field(default_factory=list)
    kinds: List[str] = field(default_factory=list)


def _is_web_url(source: str) -> bool:
    return is_url(source) and normalize_scheme(source)[1] in ("http", "https")


def _has_glob(path: str) -> bool:
    return any(char in path for char in _GLOB_CHARACTERS)


def _glob_base(url: str) -> str:
    """The part of a glob URL before its first segment with a wildcard."""
    head, sep, rest = url.partition("://")
    parts = (rest if sep else head).split("/")
    fixed: List[str] = []
    for part in parts:
        if _has_glob(part):
            break
        fixed.append(part)
    return (head + sep if sep else "") + "/".join(fixed)


def select(sources: Sequence[str], filters: Filters, options: Dict[str, Any]) -> Selection:
    """Resolve SOURCEs (URL prefixes, directories, files or glob patterns) into objects.

    A prefix or directory is listed recursively and filtered like ``ls``; a
    glob pattern (``s3://b/svc/*/CPU_PROFILE-2026-11-24T10*``) keeps the
    listed profiles it matches; a single file, and an http(s) URL, is taken as it is. Several
    kinds without ``--kind`` and an empty selection are errors.
    """
    selection = Selection()
    found_kinds = set()
    for source in sources:
        if _is_web_url(source):
            # one object: HTTP lists nothing, and "?" starts a query (a presigned
            # URL's signature), not a wildcard
            selection.urls.append(normalize_scheme(source)[0])
            continue
        fs, path = open_url(source, options)
        try:
            if _has_glob(path):
                matched = set(fs.glob(path))
                listed = [
                    e
                    for e in entries(_glob_base(source), filters, options, False)
                    if e.path in matched
                ]
            elif fs.isdir(path):
                listed = entries(source, filters, options, False)
            elif fs.exists(path):
                selection.urls.append(str(fs.unstrip_protocol(path)))
                continue
            else:
                raise CliError(f"{redact_url(source)} does not exist: check the path or URL")
        except OSError as exc:
            raise storage_error(exc, source) from None
        for entry in listed:
            selection.urls.append(entry.url)
            found_kinds.add(entry.kind)
    selection.kinds = sorted(found_kinds)
    if len(found_kinds) > 1 and not filters.kinds:
        raise CliError(
            f"the sources hold several kinds ({', '.join(selection.kinds)}): pick one with --kind"
        )
    if not selection.urls:
        raise CliError(
            "no profile matched: check the URL and the --kind/--since/--until/--service/--where "
            "filters"
        )
    return selection
