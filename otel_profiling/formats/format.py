"""``ProfileFormat``: one encoding of a profile, with both directions and its names.

A format knows its name (``format=``), file extension, content type and the
profile kinds it can hold; ``encode(capture)`` writes what a profiler
captured, ``decode(data)`` reads a file back into a ``ProfileTree`` (the
shape the command line views, converts and merges), and ``sniff(data)`` says
whether bytes look like this format. Each format lives in its own module with
both directions; ``registry`` holds them all.

A capture is one of:

* ``SampleCapture`` (``formats/samples.py``): the sampling CPU engine's samples;
* ``ProfileTree``: a call tree with the unit and measure of its values;
* ``CallGraphCapture``: function-level calls and times (yappi), for ``pstats``
  and ``callgrind``;
* ``HeapGraph`` (``formats/heapsnapshot.py``): the objects and references of a heap.

A format that holds a call tree accepts a ``SampleCapture`` too: the base
class turns it into the tree first, so a tree format is written by every CPU
engine without code of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, Optional, Tuple

from otel_profiling.formats.callgraph import CallGraph
from otel_profiling.formats.calltree import CallNode
from otel_profiling.formats.samples import SampleCapture, call_tree
from otel_profiling.profile import ProfileKind

UNITS = ("seconds", "bytes", "count")
"""The units of a ``ProfileTree``'s self values."""

MEASURE_LABELS = {
    "wall": "wall time",
    "cpu": "CPU time",
    "inuse_space": "memory (bytes)",
    "alloc_space": "allocated memory (bytes)",
    "space": "memory (bytes)",
}
"""How ``view`` names a measure; an unknown one is named after the unit."""

UNIT_LABELS = {"seconds": "time", "bytes": "memory (bytes)", "count": "samples"}


class ProfileFormatError(ValueError):
    """The data is not a profile in a format the project reads, or cannot be written in it."""


class EmptyProfileError(ProfileFormatError):
    """The data is empty: no format would read it (so naming one is no fix)."""


class NoReadableFormatError(ProfileFormatError):
    """No format this installation reads fits the data; the message lists those it reads."""


@dataclass
class ProfileTree:
    """A call tree, the unit of its self values, what they measure, and when it was taken.

    ``unit`` is ``seconds``, ``bytes`` or ``count``; ``measure`` is the pprof
    sample type name of the values (``wall``, ``cpu``, ``inuse_space``...),
    empty when the source does not say, so that a wall-clock profile stays
    wall-clock through ``convert`` and ``merge``. ``has_counts``: the nodes'
    ``self_count`` are counts the source recorded (samples, live objects);
    formats that keep values only (folded, ``.heapprofile``, speedscope)
    leave it false, and no count is written from them.
    """

    root: CallNode
    unit: str
    format: str = ""
    start_ns: int = 0
    duration_ns: int = 0
    notes: Dict[str, Any] = field(default_factory=dict)
    measure: str = ""
    has_counts: bool = True

    @property
    def total(self) -> float:
        return self.root.total_value()

    @property
    def samples(self) -> Optional[int]:
        """How many samples (or objects) the tree holds; ``None`` if its source kept no counts."""
        return self.root.total_count() if self.has_counts else None

    @property
    def measure_label(self) -> str:
        """``wall time``, ``CPU time``, ``memory (bytes)``... for people."""
        return MEASURE_LABELS.get(self.measure) or UNIT_LABELS.get(self.unit, self.unit)


@dataclass
class CallGraphCapture:
    """Function-level calls and times (seconds) measured on ``clock`` (``wall`` or ``cpu``)."""

    graph: CallGraph
    clock: str
    start_ns: int = 0
    duration_ns: int = 0


def sample_tree(capture: SampleCapture) -> ProfileTree:
    """A sampling capture as a call tree in seconds (``by_span`` as the capture asks)."""
    root, _ = call_tree(capture, capture.by_span)
    return ProfileTree(
        root, "seconds", "", capture.start_ns, capture.duration_ns, measure=capture.clock
    )


class ProfileFormat:
    """An encoding of a profile: the name used in ``format=``, its file extension and MIME type.

    The base class is also a plain description (``ProfileFormat(name,
    extension, content_type)``) of a format this installation cannot encode,
    e.g. one named in a spooled profile's header.
    """

    readable = False
    """Whether ``decode`` reads this format (the command line lists only readable ones)."""
    aliases: Tuple[str, ...] = ()
    """Other file extensions (without the dot) that name this format."""
    sniff_last = False
    """Whether ``sniff`` is costly or accepts much (it is then tried after the others)."""
    writes_from = ""
    """What this format is written from, for the error when it is given something else."""

    def __init__(
        self,
        name: str,
        extension: str,
        content_type: str,
        kinds: Iterable[ProfileKind] = (),
    ) -> None:
        self.name = name
        self.extension = extension
        self.content_type = content_type
        self.kinds: FrozenSet[ProfileKind] = frozenset(kinds)

    # -- writing ---------------------------------------------------------------------------

    def accepts(self, capture: type) -> bool:
        """Whether ``encode`` takes a capture of this type."""
        if capture is SampleCapture:
            return self.accepts(ProfileTree)
        return False

    def encode(self, capture: object) -> bytes:
        """The capture as this format's bytes."""
        if isinstance(capture, SampleCapture) and self.accepts(ProfileTree):
            return self.encode(sample_tree(capture))
        raise ProfileFormatError(
            f"{self.name} cannot be written from a {type(capture).__name__}"
            + (f": it is written from {self.writes_from}" if self.writes_from else "")
        )

    # -- reading ---------------------------------------------------------------------------

    def decode(self, data: bytes) -> ProfileTree:
        """Parse ``data`` into a call tree."""
        raise ProfileFormatError(f"{self.name} files cannot be read by this installation")

    def sniff(self, data: bytes) -> bool:
        """Whether ``data`` looks like this format (cheap; ``decode`` does the checking)."""
        return False

    # -- identity --------------------------------------------------------------------------

    def _key(self) -> Tuple[str, str, str]:
        return (self.name, self.extension, self.content_type)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProfileFormat):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"ProfileFormat(name={self.name!r}, extension={self.extension!r}, "
            f"content_type={self.content_type!r})"
        )


class TreeFormat(ProfileFormat):
    """A format written from a call tree (and so from a sampling capture)."""

    def accepts(self, capture: type) -> bool:
        return capture in (ProfileTree, SampleCapture)

    def encode(self, capture: object) -> bytes:
        if isinstance(capture, ProfileTree):
            return self.encode_tree(capture)
        return super().encode(capture)

    def encode_tree(self, tree: ProfileTree) -> bytes:
        raise NotImplementedError


# -- JSON formats share one parse of the input ----------------------------------------------

_last: Tuple[Optional[bytes], Any] = (None, None)


def json_document(data: bytes) -> Any:
    """``json.loads(data)``, remembered for the same bytes object (sniffing, then decoding)."""
    global _last
    if _last[0] is data:
        return _last[1]
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProfileFormatError(f"not JSON: {exc}") from None
    _last = (data, doc)
    return doc


def forget_json() -> None:
    """Drop the remembered document (it can be large)."""
    global _last
    _last = (None, None)


def json_object(data: bytes) -> Optional[Dict[str, Any]]:
    """The JSON object ``data`` holds, or None when it is not one (for ``sniff``)."""
    if data.lstrip()[:1] != b"{":
        return None
    try:
        doc = json_document(data)
    except ProfileFormatError:
        return None
    return doc if isinstance(doc, dict) else None
