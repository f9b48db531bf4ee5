"""Every profile format, in one registry: profilers, the exporter and the command line use it.

The built-in formats are listed here once; other packages add theirs through
the ``otel_profiling_format`` entry point group, whose value is a
``ProfileFormat`` instance (or a class taking no arguments)::

    [project.entry-points.otel_profiling_format]
    myformat = "my_package.myformat:FORMAT"

A plugin cannot replace a built-in format of the same name; a plugin that
fails to load is logged and left out.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from typing import Dict, List, Optional

from otel_profiling.formats import (
    callgrind,
    cpuprofile,
    folded,
    heapprofile,
    heapsnapshot,
    pprof,
    pstats,
    speedscope,
)
from otel_profiling.formats.format import (
    EmptyProfileError,
    NoReadableFormatError,
    ProfileFormat,
    ProfileFormatError,
    ProfileTree,
    forget_json,
)
from otel_profiling.profile import ProfileKind

ENTRY_POINT_GROUP = "otel_profiling_format"

_logger = logging.getLogger(__name__)

# The first format of each kind is its default (the Chrome DevTools one).
_BUILTIN: List[ProfileFormat] = [
    cpuprofile.FORMAT,
    heapprofile.FORMAT,
    heapsnapshot.FORMAT,
    pprof.FORMAT,
    pstats.FORMAT,
    callgrind.FORMAT,
    folded.FORMAT,
    speedscope.FORMAT,
]
_formats: Optional[Dict[str, ProfileFormat]] = None
_lock = threading.Lock()


def _load_plugins(into: Dict[str, ProfileFormat]) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in into:
            continue
        try:
            loaded = entry_point.load()
            fmt = loaded() if isinstance(loaded, type) else loaded
        except Exception:  # noqa: BLE001 - a broken plugin must not break profiling
            _logger.exception("Could not load profile format %r; it is left out.", entry_point.name)
            continue
        if not isinstance(fmt, ProfileFormat):
            _logger.warning(
                "Entry point %r in %s is not a ProfileFormat; it is left out.",
                entry_point.name,
                ENTRY_POINT_GROUP,
            )
            continue
        into[fmt.name] = fmt


def all_formats() -> Dict[str, ProfileFormat]:
    """Every format by name: the built-in ones, then installed plugins."""
    global _formats
    if _formats is None:
        with _lock:
            if _formats is None:
                found = {fmt.name: fmt for fmt in _BUILTIN}
                _load_plugins(found)
                _formats = found
    return _formats


def register(fmt: ProfileFormat) -> None:
    """Add a format at run time (plugins normally use the entry point group)."""
    formats = all_formats()
    if fmt.name in formats:
        raise ValueError(f"a profile format named {fmt.name!r} is already registered")
    formats[fmt.name] = fmt


# -- by kind, for profilers ------------------------------------------------------------------


def formats_for(kind: ProfileKind) -> List[ProfileFormat]:
    """The formats a profile of ``kind`` can be written in; the first is the default."""
    return [fmt for fmt in all_formats().values() if kind in fmt.kinds]


def default_format(kind: ProfileKind) -> ProfileFormat:
    """The default format for ``kind``: the Chrome DevTools one."""
    return formats_for(kind)[0]


def get_format(kind: ProfileKind, name: str) -> ProfileFormat:
    """Look up ``name`` for ``kind``; a clear ``ValueError`` lists the valid names."""
    wanted = name.strip().lower()
    for fmt in formats_for(kind):
        if fmt.name == wanted:
            return fmt
    valid = ", ".join(f.name for f in formats_for(kind))
    raise ValueError(f"Unknown format {name!r} for {kind.value}: choose one of {valid}.")


# -- reading and writing files, for the command line ------------------------------------------


def readable_formats() -> List[str]:
    """Names of the formats ``decode`` reads."""
    return [fmt.name for fmt in all_formats().values() if fmt.readable]


def tree_formats() -> List[str]:
    """Names of the formats a call tree (``convert``, ``merge``) can be written in."""
    return [fmt.name for fmt in all_formats().values() if fmt.accepts(ProfileTree)]


def format_from_name(name: str) -> Optional[str]:
    """The format a file or object name's extension says (``x.speedscope.json``, ``x.pb.gz``)."""
    found = _format_from_name(name)
    return None if found is None else found.name


def _format_from_name(name: str) -> Optional[ProfileFormat]:
    base = name.rsplit("/", 1)[-1].lower()
    if base.endswith(".gz"):
        base = base[:-3]
    best: Optional[ProfileFormat] = None
    best_length = 0
    for fmt in all_formats().values():
        for extension in (fmt.extension, fmt.name, *fmt.aliases):
            if len(extension) > best_length and base.endswith("." + extension):
                best, best_length = fmt, len(extension)
    return best


def sniff_format(data: bytes) -> str:
    """Recognise the format from the bytes, for files without a telling extension."""
    return _sniff(data).name


def _sniff(data: bytes) -> ProfileFormat:
    for fmt in sorted(all_formats().values(), key=lambda f: f.sniff_last):
        if fmt.readable and fmt.sniff(data):
            return fmt
    raise NoReadableFormatError(
        f"unrecognised profile format: expected one of {', '.join(readable_formats())}"
    )


def lookup(name: str) -> ProfileFormat:
    """The format called ``name``; the error lists the known ones."""
    fmt = all_formats().get(name.strip().lower())
    if fmt is None:
        raise ProfileFormatError(
            f"unknown format {name!r}: choose one of {', '.join(all_formats())}"
        )
    return fmt


def read_profile(data: bytes, name: str = "", fmt: Optional[str] = None) -> ProfileTree:
    """Parse ``data``; the format comes from ``fmt``, else ``name``'s extension, else the bytes."""
    if not data.strip():
        raise EmptyProfileError("empty (no bytes, or only whitespace): it holds no profile")
    try:
        chosen = lookup(fmt) if fmt else _format_from_name(name) or _sniff(data)
        if not chosen.readable:
            raise NoReadableFormatError(
                f"cannot read {chosen.name}: choose one of {', '.join(readable_formats())}"
            )
        try:
            tree = chosen.decode(data)
        except ProfileFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ProfileFormatError(
                f"malformed {chosen.name} profile ({type(exc).__name__}: {exc})"
            ) from None
    finally:
        forget_json()
    tree.format = tree.format or chosen.name
    return tree


def write_profile(tree: ProfileTree, fmt: str) -> bytes:
    """Encode ``tree`` as ``fmt`` (one of ``tree_formats()``)."""
    chosen = all_formats().get(fmt)
    if chosen is None or not chosen.accepts(ProfileTree):
        raise ValueError(f"cannot write {fmt!r}: choose one of {', '.join(tree_formats())}")
    return chosen.encode(tree)


def output_format(name: str) -> str:
    """The output format a file name asks for (``x.pprof``, ``x.speedscope.json``...)."""
    fmt = _format_from_name(name)
    if fmt is None or not fmt.accepts(ProfileTree):
        names = tree_formats()
        extensions = ", ".join("." + all_formats()[n].extension for n in names)
        raise ValueError(
            f"cannot tell the output format from {name!r}: pass --to "
            f"({'|'.join(names)}) or use a {extensions} name"
        )
    return fmt.name
