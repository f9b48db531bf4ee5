"""pprof (``profile.proto``, gzip-compressed): from a call tree or a sampling capture, and back.

Through the ``protobuf`` package and ``profile_pb2``, generated from
``profile.proto`` next to this module. String 0 is ``""``, ids start at 1,
each sample lists its locations leaf first, as pprof, ``go tool pprof``,
Pyroscope and speedscope expect. A function's ``system_name`` stays empty:
``go tool pprof`` strips ``<...>`` from it as C++ template arguments, which
would turn Python's ``<module>`` or ``<listcomp>`` into ``<unknown>``.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Callable, Dict, List, Sequence, Tuple

from google.protobuf.message import DecodeError

from otel_profiling.formats import profile_pb2
from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root
from otel_profiling.formats.format import ProfileFormatError, ProfileTree, TreeFormat
from otel_profiling.formats.samples import IDLE, SampleCapture, named_thread_frame, task_frame
from otel_profiling.profile import ProfileKind

Label = Tuple[int, int, int, int]
"""A label as string indexes and a number: (key, value string, number, number unit)."""


class _Writer:
    """The tables every pprof profile has: strings, functions, locations; then the header."""

    def __init__(self, sample_types: Sequence[Tuple[str, str]]) -> None:
        if len(sample_types) not in (1, 2):
            raise ValueError(
                "pprof is written with a value, or a count and a value, per sample: "
                "give one or two sample types"
            )
        self._counted = len(sample_types) == 2
        self.profile = profile_pb2.Profile()
        self._strings: Dict[str, int] = {"": 0}
        for type_, unit in sample_types:
            self.profile.sample_type.add(type=self.string(type_), unit=self.string(unit))
        self._functions: Dict[Tuple[str, str], int] = {}
        self.locations: Dict[Frame, int] = {}

    def string(self, text: str) -> int:
        found = self._strings.get(text)
        if found is None:
            found = self._strings[text] = len(self._strings)
        return found

    def location(self, frame: Frame) -> int:
        """The location id of ``frame`` (one location per frame)."""
        found = self.locations.get(frame)
        if found is not None:
            return found
        fkey = (frame.function, frame.filename)
        func_id = self._functions.get(fkey)
        line = max(frame.lineno, 0)
        if func_id is None:
            func_id = self._functions[fkey] = len(self._functions) + 1
            self.profile.function.add(
                id=func_id,
                name=self.string(frame.function),
                filename=self.string(frame.filename),
                start_line=line,
            )
        loc_id = self.locations[frame] = len(self.locations) + 1
        self.profile.location.add(id=loc_id).line.add(function_id=func_id, line=line)
        return loc_id

    def sample(
        self, location_ids: List[int], count: int, value: int, labels: Sequence[Label] = ()
    ) -> None:
        """One sample: location ids (leaf first), its count and value (the value only
        when written without counts), labels."""
        values = (count, value) if self._counted else (value,)
        sample = self.profile.sample.add(location_id=location_ids, value=values)
        for key, text, number, unit in labels:
            sample.label.add(key=key, str=text, num=number, num_unit=unit)

    def label(self, key: str, text: str = "", number: int = 0, unit: str = "") -> Label:
        """A label: a string value, or a number (with its unit, e.g. ``nanoseconds``)."""
        return (
            self.string(key),
            self.string(text) if text else 0,
            0 if text else number,
            self.string(unit) if unit else 0,
        )

    def finish(
        self,
        *,
        period_type: Tuple[str, str],
        period: int,
        time_nanos: int,
        duration_nanos: int,
    ) -> bytes:
        profile = self.profile
        profile.period_type.type = self.string(period_type[0])
        profile.period_type.unit = self.string(period_type[1])
        profile.period = int(period)
        profile.time_nanos = int(time_nanos)
        profile.duration_nanos = int(duration_nanos)
        profile.string_table.extend(self._strings)
        return gzip.compress(profile.SerializeToString(), compresslevel=1, mtime=0)


def encode_pprof(
    root: CallNode,
    *,
    sample_types: Sequence[Tuple[str, str]],
    value_scale: float,
    period_type: Tuple[str, str],
    period: int,
    time_nanos: int,
    duration_nanos: int,
) -> bytes:
    """Gzip-compressed ``profile.proto`` bytes for ``root``.

    One sample per node with a nonzero value; its values are
    ``[node.self_count, round(node.self_value * value_scale)]``, or only the
    second with one sample type (a tree without counts).
    """
    writer = _Writer(sample_types)
    # Pre-order walk carrying each node's stack as location ids, leaf first.
    work: List[Tuple[CallNode, List[int]]] = [
        (child, []) for child in reversed(list(root.children.values()))
    ]
    while work:
        node, above = work.pop()
        ids = [writer.location(node.frame), *above]
        if node.children:
            work.extend((child, ids) for child in reversed(list(node.children.values())))
        count, value = int(node.self_count), round(node.self_value * value_scale)
        if value or (count and len(sample_types) == 2):
            writer.sample(ids, count, value)
    return writer.finish(
        period_type=period_type,
        period=period,
        time_nanos=time_nanos,
        duration_nanos=duration_nanos,
    )


TIMESTAMP_LABEL = "timestamp"
"""Numeric pprof label (unit ``nanoseconds``) on each sample of a sampling capture: the unix
time of the first of the consecutive identical samples it holds. pprof has no time field;
the label keeps the timeline in the bytes, so the OTLP exporter can rebuild per-sample
timestamps from a payload read back from the spool."""


def encode_pprof_samples(capture: SampleCapture) -> bytes:
    """A sampling capture as pprof: exact stacks, one pprof sample per run of samples.

    Each run (consecutive samples of one thread or task with the same stack and
    span) is one pprof sample; values are ``samples/count`` and
    ``wall|cpu/nanoseconds``; the period is the sampling interval. Labels:
    ``thread.id`` (number), ``thread.name``, ``task.name`` for a suspended
    asyncio task, ``trace_id`` and ``span_id`` (hex) for samples taken in a
    span, and ``timestamp`` (number, nanoseconds) when the run began. Viewers
    add up samples with the same stack, so totals are as with one sample per
    stack. Under ``clock="cpu"`` the unused time is one ``(idle)`` sample
    without labels.
    """
    clock = capture.clock
    writer = _Writer([("samples", "count"), (clock, "nanoseconds")])
    frames, stacks = capture.frames, capture.stacks
    stack_ids: Dict[int, List[int]] = {}
    track_labels: Dict[int, List[Label]] = {}
    span_labels: Dict[int, List[Label]] = {}
    for track, stack, span, time_ns, count, value in capture.rows():
        ids = stack_ids.get(stack)
        if ids is None:
            ids = stack_ids[stack] = [
                writer.location(frames[index]) for index in reversed(stacks[stack])
            ]
        labels = track_labels.get(track)
        if labels is None:
            where = capture.tracks[track]
            thread = capture.threads[where.thread]
            labels = [
                writer.label("thread.id", number=thread.ident),
                writer.label("thread.name", thread.name),
            ]
            if where.task:
                labels.append(writer.label("task.name", where.task))
            track_labels[track] = labels
        if span:
            found_labels = span_labels.get(span)
            if found_labels is None:
                trace_id, span_id = capture.spans[span]
                found_labels = span_labels[span] = [
                    writer.label("trace_id", f"{trace_id:032x}"),
                    writer.label("span_id", f"{span_id:016x}"),
                ]
            labels = labels + found_labels
        stamp = writer.label(TIMESTAMP_LABEL, number=time_ns, unit="nanoseconds")
        writer.sample(ids, count, value, [*labels, stamp])
    if capture.idle_ns > 0:
        writer.sample([writer.location(IDLE)], capture.idle_count, capture.idle_ns)
    return writer.finish(
        period_type=(clock, "nanoseconds"),
        period=capture.interval_ns,
        time_nanos=capture.start_ns,
        duration_nanos=capture.duration_ns,
    )


# -- a call tree's sample types ---------------------------------------------------------------

_SCALES = {"seconds": 1e9, "bytes": 1.0, "count": 1.0}
_UNIT_NAMES = {"seconds": "nanoseconds", "bytes": "bytes", "count": "count"}
_DEFAULT_MEASURES = {"seconds": "cpu", "bytes": "space", "count": "events"}
_COUNTS = {"inuse_space": "inuse_objects", "alloc_space": "alloc_objects"}


def tree_sample_types(tree: ProfileTree) -> Tuple[List[Tuple[str, str]], Tuple[str, str]]:
    """``([count type, value type], period type)`` for a tree, from its unit and measure
    (``[value type]`` for a tree without counts)."""
    measure = tree.measure or _DEFAULT_MEASURES[tree.unit]
    value_type = (measure, _UNIT_NAMES[tree.unit])
    count_type = (_COUNTS.get(measure, "samples"), "count")
    period_type = ("space", "bytes") if tree.unit == "bytes" else value_type
    return ([count_type] if tree.has_counts else []) + [value_type], period_type


def encode_pprof_tree(tree: ProfileTree) -> bytes:
    sample_types, period_type = tree_sample_types(tree)
    return encode_pprof(
        tree.root,
        sample_types=sample_types,
        value_scale=_SCALES[tree.unit],
        period_type=period_type,
        period=1,
        time_nanos=tree.start_ns,
        duration_nanos=tree.duration_ns,
    )


# -- reading ------------------------------------------------------------------------------------

_READ_UNITS = {
    "nanoseconds": ("seconds", 1e-9),
    "microseconds": ("seconds", 1e-6),
    "milliseconds": ("seconds", 1e-3),
    "seconds": ("seconds", 1.0),
    "bytes": ("bytes", 1.0),
}


def parse_profile(data: bytes) -> profile_pb2.Profile:
    """The ``Profile`` message in ``data`` (gzip-compressed or not)."""
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        profile = profile_pb2.Profile.FromString(data)
    except (DecodeError, OSError, EOFError, zlib.error) as exc:
        raise ProfileFormatError(f"not a pprof profile: {exc}") from None
    if not profile.string_table or profile.string_table[0] != "":
        raise ProfileFormatError("not a pprof profile: the string table must start with ''")
    return profile


def _track_frames(sample: profile_pb2.Sample, text: Callable[[int], str]) -> List[Frame]:
    """The frames a sampling capture keeps as labels, leaf first: ``(task) name``, then
    ``name (thread ident)``, as the other formats hold them, so that a pprof profile
    merges and compares with a ``.cpuprofile`` of the same program."""
    labels: Dict[str, str] = {}
    ident = None
    for label in sample.label:
        key = text(label.key)
        if key == "thread.id":
            ident = label.num
        elif key in ("thread.name", "task.name"):
            labels[key] = text(label.str)
    frames: List[Frame] = []
    if "task.name" in labels:
        frames.append(task_frame(labels["task.name"]))
    if "thread.name" in labels and ident is not None:
        frames.append(named_thread_frame(labels["thread.name"], ident))
    return frames


def decode_pprof(data: bytes) -> ProfileTree:
    """pprof ``profile.proto`` (gzip or not): the default (last) sample type as value."""
    profile = parse_profile(data)
    strings = list(profile.string_table)

    def text(index: int) -> str:
        return strings[index] if 0 <= index < len(strings) else ""

    types = [(text(t.type), text(t.unit)) for t in profile.sample_type]
    value_at = len(types) - 1
    if profile.default_sample_type:
        wanted = text(profile.default_sample_type)
        for index, (name, _) in enumerate(types):
            if name == wanted:
                value_at = index
    count_at = next((i for i, (_, u) in enumerate(types) if u == "count" and i != value_at), -1)
    measure, unit_name = types[value_at] if types else ("", "")
    unit, scale = _READ_UNITS.get(unit_name, ("count", 1.0))
    functions = {f.id: (text(f.name) or "(unknown)", text(f.filename)) for f in profile.function}
    location_frames: Dict[int, List[Frame]] = {}
    for location in profile.location:
        frames = []
        for line in location.line:  # innermost (inlined) first
            name, filename = functions.get(line.function_id, ("(unknown)", ""))
            frames.append(Frame(name, filename, max(line.line, 0)))
        location_frames[location.id] = frames
    root = new_root()
    for sample in profile.sample:
        stack: List[Frame] = []
        for loc_id in sample.location_id:  # leaf first
            stack.extend(location_frames.get(loc_id, ()))
        stack.extend(_track_frames(sample, text))
        stack.reverse()
        values = sample.value
        amount = values[value_at] * scale if value_at < len(values) else 0.0
        count = values[count_at] if 0 <= count_at < len(values) else 0
        add_stack(root, stack, amount, count)
    return ProfileTree(
        root,
        unit,
        "pprof",
        profile.time_nanos,
        profile.duration_nanos,
        measure=measure,
        has_counts=count_at >= 0,
    )


class PprofFormat(TreeFormat):
    """pprof's ``profile.proto``, gzip-compressed (go tool pprof, Pyroscope, speedscope)."""

    readable = True
    aliases = ("pb",)
    sniff_last = True  # without gzip, recognising pprof means decoding it

    def __init__(self) -> None:
        super().__init__(
            "pprof",
            "pprof",
            "application/vnd.google.protobuf+gzip",
            [ProfileKind.CPU_PROFILE, ProfileKind.HEAP_PROFILE],
        )

    def encode(self, capture: object) -> bytes:
        if isinstance(capture, SampleCapture):
            return encode_pprof_samples(capture)
        return super().encode(capture)

    def encode_tree(self, tree: ProfileTree) -> bytes:
        return encode_pprof_tree(tree)

    def decode(self, data: bytes) -> ProfileTree:
        return decode_pprof(data)

    def sniff(self, data: bytes) -> bool:
        if data[:2] == b"\x1f\x8b":
            return True
        try:
            decode_pprof(data)
        except ProfileFormatError:
            return False
        return True


FORMAT = PprofFormat()
