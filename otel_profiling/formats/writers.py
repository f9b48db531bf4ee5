"""Writing a ``ProfileTree`` in a chosen format, for ``convert`` and ``merge``.

pprof and collapsed stacks come from their own encoder modules, imported when
asked for; cpuprofile and speedscope are always available.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict

from otel_profiling.formats.cpuprofile import encode_cpuprofile
from otel_profiling.formats.readers import ProfileTree
from otel_profiling.formats.speedscope import encode_speedscope
from otel_profiling.version import DISTRIBUTION

WRITE_FORMATS = ("pprof", "cpuprofile", "folded", "speedscope")
EXTENSIONS = {
    "pprof": "pprof",
    "cpuprofile": "cpuprofile",
    "folded": "folded",
    "speedscope": "speedscope.json",
}

# pprof sample and period types per unit: (sample types, value scale, period type)
_PPROF = {
    "seconds": ([("samples", "count"), ("cpu", "nanoseconds")], 1e9, ("cpu", "nanoseconds")),
    "bytes": ([("samples", "count"), ("space", "bytes")], 1.0, ("space", "bytes")),
    "count": ([("samples", "count"), ("events", "count")], 1.0, ("events", "count")),
}
# collapsed stacks hold integers: microseconds for time, bytes for memory
_FOLDED_SCALE = {"seconds": 1e6, "bytes": 1.0, "count": 1.0}


class WriterUnavailableError(RuntimeError):
    """The encoder module for a format is not part of this installation."""


def _encoder(module: str, name: str) -> Callable[..., bytes]:
    try:
        return getattr(importlib.import_module(f"otel_profiling.formats.{module}"), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        raise WriterUnavailableError(
            f"writing {module} needs otel_profiling.formats.{module}.{name}, which this "
            f"installation lacks; upgrade {DISTRIBUTION} or choose cpuprofile or speedscope"
        ) from None


def _pprof(tree: ProfileTree) -> bytes:
    sample_types, scale, period_type = _PPROF[tree.unit]
    encode = _encoder("pprof", "encode_pprof")
    return encode(
        tree.root,
        sample_types=sample_types,
        value_scale=scale,
        period_type=period_type,
        period=1,
        time_nanos=tree.start_ns,
        duration_nanos=tree.duration_ns,
    )


def _folded(tree: ProfileTree) -> bytes:
    return _encoder("folded", "encode_folded")(tree.root, value_scale=_FOLDED_SCALE[tree.unit])


def _cpuprofile(tree: ProfileTree) -> bytes:
    if tree.unit != "seconds":
        raise ValueError(
            f"a .cpuprofile holds time, but this profile holds {tree.unit}: "
            "convert it to pprof, folded or speedscope instead"
        )
    return encode_cpuprofile(tree.root, start_us=tree.start_ns // 1000)


def _speedscope(tree: ProfileTree) -> bytes:
    return encode_speedscope(tree.root, unit=tree.unit)


WRITERS: Dict[str, Callable[[ProfileTree], bytes]] = {
    "pprof": _pprof,
    "cpuprofile": _cpuprofile,
    "folded": _folded,
    "speedscope": _speedscope,
}


def write_profile(tree: ProfileTree, fmt: str) -> bytes:
    """Encode ``tree`` as ``fmt`` (one of ``WRITE_FORMATS``)."""
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"cannot write {fmt!r}: choose one of {', '.join(WRITE_FORMATS)}")
    return writer(tree)


def format_for_output(name: str) -> str:
    """The output format a file name asks for (``x.pprof``, ``x.speedscope.json``...)."""
    from otel_profiling.formats.readers import format_from_name

    fmt = format_from_name(name)
    if fmt not in WRITERS:
        raise ValueError(
            f"cannot tell the output format from {name!r}: pass --to "
            f"({'|'.join(WRITE_FORMATS)}) or use a .pprof, .cpuprofile, .folded or "
            ".speedscope.json name"
        )
    return str(fmt)
