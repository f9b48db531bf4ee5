"""Many profiles added into one call tree, with the same result in any grouping.

``merge`` and ``diff`` add profiles one after another on this machine, or in
chunks on Dask workers whose partial sums are then added together. Both give
the same bits:

* values are kept as whole numbers of the unit's step (nanoseconds, bytes,
  millionths of a sample) in floats, where addition is exact below 2**53
  (104 days of CPU time, 8 PiB), so the order of additions does not matter;
* a node's children keep the order in which they were first seen, and adding
  partial sums left to right (earlier inputs on the left) keeps that order.

A failed input is recorded with its reason instead of stopping the merge:
every input ends up either merged or in ``failures``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from otel_profiling.cli.common import CliError, open_url, storage_error
from otel_profiling.exporters.backends import normalize_scheme
from otel_profiling.formats import ProfileFormatError, ProfileTree, read_profile
from otel_profiling.formats.calltree import CallNode, Frame, new_root
from otel_profiling.formats.merge import merge_into
from otel_profiling.redact import redact_url

STEPS = {"seconds": 1e9, "bytes": 1.0, "count": 1e6}
"""Values are summed as whole multiples of ``1 / step`` of their unit."""

MEASURES = {
    "CPU_PROFILE": "time",
    "HEAP_PROFILE": "memory",
    "HEAP_SNAPSHOT": "a heap snapshot summary",
    "count": "sample counts",
}
"""What a kind of profile holds, for messages (``time``: wall-clock or CPU)."""

PICK_ONE_MEASURE = (
    "pick profiles that measure the same thing with --kind, a glob (e.g. "
    "'s3://bucket/prefix/*/CPU_PROFILE-*.cpuprofile') or file names"
)
"""The fix when inputs do not add up. ``--kind`` alone is not enough: a folded file has
no unit (its values are counts), so a folded CPU profile does not add to a .cpuprofile."""

_THREAD_FRAME = re.compile(r"^(?P<name>.*) \(thread \d+\)$")
"""A CPU profile's per-thread frame, ``MainThread (thread 140…)``: the ident is per process."""


def kind_of(tree: ProfileTree) -> str:
    """What a parsed profile measures; profiles of different kinds do not add up."""
    if tree.notes.get("summary"):
        return "HEAP_SNAPSHOT"
    return {"seconds": "CPU_PROFILE", "bytes": "HEAP_PROFILE"}.get(tree.unit, "count")


@dataclass
class Failure:
    """An input that could not be read or parsed, and why."""

    url: str
    error: str


@dataclass
class Packed:
    """An ``Aggregate`` as flat arrays: small to send between Dask workers, no deep pickling.

    Nodes are in pre-order with children in their order; ``parents[i] < i``.
    """

    unit: Optional[str]
    kind: Optional[str]
    frames: List[Frame]
    parents: array
    frame_ids: array
    values: array
    counts: array
    start_ns: Optional[int]
    end_ns: int
    merged: int
    failures: List[Failure] = field(default_factory=list)
    measure: Optional[str] = None
    has_counts: bool = True


class Aggregate:
    """The sum of the profiles added so far, and the inputs that failed."""

    def __init__(self) -> None:
        self.root = new_root()
        self.unit: Optional[str] = None
        self.measure: Optional[str] = None
        """What the values measure (``wall``, ``cpu``...); empty when the inputs differ."""
        self.has_counts = True
        """Every input recorded its counts (``ProfileTree.has_counts``)."""
        self.kind: Optional[str] = None
        self.start_ns: Optional[int] = None
        self.end_ns = 0
        self.merged = 0
        self.failures: List[Failure] = []
        self._frames: Dict[Frame, Frame] = {}

    @property
    def inputs(self) -> int:
        return self.merged + len(self.failures)

    def _check(self, unit: Optional[str], kind: Optional[str], name: str) -> None:
        if unit is None:
            return
        if self.unit is None:
            self.unit, self.kind = unit, kind
        elif (unit, kind) != (self.unit, self.kind):
            raise CliError(
                f"{redact_url(name)} holds {MEASURES.get(kind or '', kind)} but earlier inputs "
                f"hold {MEASURES.get(self.kind or '', self.kind)}: {PICK_ONE_MEASURE}"
            )

    def _measure(self, measure: Optional[str]) -> None:
        if measure is not None:
            self.measure = measure if self.measure in (None, measure) else ""

    def _span(self, start_ns: Optional[int], end_ns: int) -> None:
        if start_ns:
            self.start_ns = start_ns if self.start_ns is None else min(self.start_ns, start_ns)
            self.end_ns = max(self.end_ns, end_ns)

    def add(self, tree: ProfileTree, name: str) -> None:
        """Add a parsed profile (which this changes: its values become whole steps)."""
        kind = kind_of(tree)
        self._check(tree.unit, kind, name)
        self._measure(tree.measure)
        self.has_counts = self.has_counts and tree.has_counts
        step = STEPS[tree.unit]
        for node, _ in tree.root.walk():
            node.self_value = float(round(node.self_value * step))
        merge_into(self.root, _threads_by_name(tree.root), self._frames)
        self._span(tree.start_ns, tree.start_ns + tree.duration_ns)
        self.merged += 1

    def fail(self, url: str, error: str) -> None:
        self.failures.append(Failure(redact_url(url), error))

    def pack(self) -> Packed:
        frame_index: Dict[Frame, int] = {}
        parents, frame_ids = array("q"), array("q")
        values, counts = array("d"), array("q")
        pending: List[Tuple[CallNode, int]] = [(self.root, -1)]
        while pending:
            node, parent = pending.pop()
            index = len(parents)
            parents.append(parent)
            frame_ids.append(frame_index.setdefault(node.frame, len(frame_index)))
            values.append(node.self_value)
            counts.append(node.self_count)
            pending.extend((child, index) for child in reversed(list(node.children.values())))
        return Packed(
            unit=self.unit,
            kind=self.kind,
            frames=list(frame_index),
            parents=parents,
            frame_ids=frame_ids,
            values=values,
            counts=counts,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            merged=self.merged,
            failures=list(self.failures),
            measure=self.measure,
            has_counts=self.has_counts,
        )

    def add_packed(self, packed: Packed) -> None:
        """Add a partial sum of later inputs than those already added."""
        self._check(packed.unit, packed.kind, "a partial merge")
        self._measure(packed.measure)
        self.has_counts = self.has_counts and packed.has_counts
        frames = [self._frames.setdefault(frame, frame) for frame in packed.frames]
        nodes = [self.root]
        self.root.self_value += packed.values[0]
        self.root.self_count += packed.counts[0]
        for i in range(1, len(packed.parents)):
            node = nodes[packed.parents[i]].child(frames[packed.frame_ids[i]])
            node.self_value += packed.values[i]
            node.self_count += packed.counts[i]
            nodes.append(node)
        self._span(packed.start_ns, packed.end_ns)
        self.merged += packed.merged
        self.failures.extend(packed.failures)

    @classmethod
    def unpack(cls, packed: Packed) -> Aggregate:
        aggregate = cls()
        aggregate.add_packed(packed)
        return aggregate

    def result(self, name: str = "merged") -> ProfileTree:
        """The merged profile in its unit; call once, when every input has been added."""
        if self.unit is None:
            raise CliError(self.no_input_message())
        step = STEPS[self.unit]
        for node, _ in self.root.walk():
            node.self_value /= step
        start = self.start_ns or 0
        duration = max(self.end_ns - start, 0) if self.start_ns else 0
        return ProfileTree(
            self.root,
            self.unit,
            name,
            start,
            duration,
            measure=self.measure or "",
            has_counts=self.has_counts,
        )

    def no_input_message(self) -> str:
        first = self.failures[0] if self.failures else None
        if first is None:
            return "no profile to merge"
        return (
            f"none of the {len(self.failures)} profiles could be read; the first, "
            f"{first.url}: {first.error}"
        )


def _threads_by_name(root: CallNode) -> CallNode:
    """``root`` with its per-thread frames named without the thread ident.

    The same thread of many processes (``MainThread`` of every container) then
    adds up into one subtree instead of one per process.
    """
    if not any(_THREAD_FRAME.match(f.function) for f in root.children if not f.filename):
        return root
    renamed = CallNode(root.frame)
    renamed.self_value, renamed.self_count = root.self_value, root.self_count
    for frame, child in root.children.items():
        match = None if frame.filename else _THREAD_FRAME.match(frame.function)
        if match is not None:
            frame = child.frame = frame._replace(function=match["name"])
        if frame in renamed.children:
            merge_into(renamed.children[frame], child)
        else:
            renamed.children[frame] = child
    return renamed


_FILESYSTEMS: Dict[Tuple[int, str, str], object] = {}
_FILESYSTEMS_LOCK = threading.Lock()


def _filesystem(url: str, options: Dict[str, object]) -> object:
    """One filesystem per process, protocol and options: a new S3 one costs 200-400 ms.

    Keyed by process id too, as an inherited s3fs instance fails after a fork.
    """
    protocol = normalize_scheme(url)[1]
    key = (os.getpid(), protocol, json.dumps(options, sort_keys=True, default=repr))
    with _FILESYSTEMS_LOCK:
        fs = _FILESYSTEMS.get(key)
        if fs is None:
            fs = _FILESYSTEMS[key] = open_url(url, dict(options))[0]
    return fs


def read_object(url: str, options: Dict[str, object]) -> bytes:
    """The bytes of the object at ``url``."""
    from fsspec.core import strip_protocol

    fs = _filesystem(url, options)
    try:
        return bytes(fs.cat_file(strip_protocol(url)))  # type: ignore[attr-defined]
    except OSError as exc:
        raise storage_error(exc, url) from None


def merge_objects(
    urls: Sequence[str],
    options: Dict[str, object],
    done: Optional[Callable[[str], None]] = None,
) -> Aggregate:
    """Read, parse and add each object in turn: memory is the sum plus one input.

    An object that cannot be read or parsed is recorded in ``failures`` and
    the others are still merged; ``done(url)`` is called after each object.
    """
    aggregate = Aggregate()
    for url in urls:
        try:
            data = read_object(url, options)
            tree = read_profile(data, url)
            del data
        except CliError as exc:  # storage, with the fix in the message
            aggregate.fail(url, str(exc))
        except ProfileFormatError as exc:
            aggregate.fail(url, f"not a readable profile: {exc}")
        except Exception as exc:  # noqa: BLE001 - one odd object must not stop a fleet merge
            aggregate.fail(url, f"unexpected {type(exc).__name__}: {exc}")
        else:
            aggregate.add(tree, url)
        if done is not None:
            done(url)
    return aggregate
