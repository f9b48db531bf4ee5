"""Baseline for ``pprof_codec.py``: the hand-written protobuf wire codec pprof used before.

Kept here only to be measured against the ``protobuf`` package in the same run.

The protobuf wire format is small enough to write directly (varints and
length-delimited fields), which keeps the library free of generated code and
of a compiler. Field numbers follow ``profile.proto``; string 0 is ``""``,
ids start at 1 and each sample lists its locations leaf first, as pprof,
``go tool pprof``, Pyroscope and speedscope expect.
"""

from __future__ import annotations

import gzip
from typing import Dict, List, Sequence, Tuple

from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root
from otel_profiling.formats.protowire import fields, repeated_varints, signed64
from otel_profiling.formats.samples import IDLE, SampleCapture

# Profile fields
_SAMPLE_TYPE, _SAMPLE, _LOCATION, _FUNCTION, _STRING_TABLE = 1, 2, 4, 5, 6
_TIME_NANOS, _DURATION_NANOS, _PERIOD_TYPE, _PERIOD = 9, 10, 11, 12


_SMALL = [bytes([i]) for i in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    if 0 < value < 16384:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_KEYS: Dict[Tuple[int, int], bytes] = {}


def _key(field: int, wire: int) -> bytes:
    found = _KEYS.get((field, wire))
    if found is None:
        found = _KEYS[(field, wire)] = _varint((field << 3) | wire)
    return found


def _int_field(field: int, value: int) -> bytes:
    """A varint field; zero is the default and is omitted, as protobuf does."""
    return _key(field, 0) + _varint(value) if value else b""


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


class _Strings:
    def __init__(self) -> None:
        self.index: Dict[str, int] = {"": 0}
        self.table: List[str] = [""]

    def __call__(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.table)
            self.table.append(text)
        return found


def _value_type(strings: _Strings, kind: Tuple[str, str]) -> bytes:
    return _int_field(1, strings(kind[0])) + _int_field(2, strings(kind[1]))


class _Writer:
    """The tables every pprof profile has: strings, functions, locations; then the header."""

    def __init__(self, sample_types: Sequence[Tuple[str, str]]) -> None:
        if len(sample_types) != 2:
            raise ValueError("pprof is written with two values per sample: give two sample types")
        self.strings = _Strings()
        self.out: List[bytes] = [
            _bytes_field(_SAMPLE_TYPE, _value_type(self.strings, t)) for t in sample_types
        ]
        self._functions: Dict[Tuple[str, str], int] = {}
        self._function_msgs: List[bytes] = []
        self._location_msgs: List[bytes] = []
        self.locations: Dict[Frame, bytes] = {}  # a frame's location id, varint-encoded

    def location(self, frame: Frame) -> bytes:
        """The varint-encoded location id of ``frame`` (one location per frame)."""
        found = self.locations.get(frame)
        if found is not None:
            return found
        fkey = (frame.function, frame.filename)
        func_id = self._functions.get(fkey)
        if func_id is None:
            func_id = self._functions[fkey] = len(self._functions) + 1
            # system_name stays empty: go tool pprof strips "<...>" from it (C++ templates),
            # which would turn Python's <module> or <listcomp> into <unknown>.
            self._function_msgs.append(
                _int_field(1, func_id)
                + _int_field(2, self.strings(frame.function))
                + _int_field(4, self.strings(frame.filename))
                + _int_field(5, max(frame.lineno, 0))
            )
        loc_id = len(self.locations) + 1
        line = _int_field(1, func_id) + _int_field(2, max(frame.lineno, 0))
        self._location_msgs.append(_int_field(1, loc_id) + _bytes_field(4, line))
        found = self.locations[frame] = _varint(loc_id)
        return found

    def sample(self, location_ids: bytes, count: int, value: int, labels: bytes = b"") -> None:
        """One sample: packed location ids (leaf first), two values, encoded labels."""
        values = _varint(count) + _varint(value)
        sample = (
            _LOCATIONS_KEY
            + _varint(len(location_ids))
            + location_ids
            + _VALUES_KEY
            + _varint(len(values))
            + values
            + labels
        )
        self.out.append(_SAMPLE_KEY + _varint(len(sample)) + sample)

    def label(self, key: str, text: str = "", number: int = 0) -> bytes:
        """An encoded ``Label``: a string value, or a number."""
        body = _int_field(1, self.strings(key))
        body += _int_field(2, self.strings(text)) if text else _int_field(3, number)
        return _bytes_field(3, body)

    def finish(
        self,
        *,
        period_type: Tuple[str, str],
        period: int,
        time_nanos: int,
        duration_nanos: int,
    ) -> bytes:
        out = self.out
        out.extend(_bytes_field(_LOCATION, msg) for msg in self._location_msgs)
        out.extend(_bytes_field(_FUNCTION, msg) for msg in self._function_msgs)
        period_msg = _bytes_field(_PERIOD_TYPE, _value_type(self.strings, period_type))
        out.extend(_bytes_field(_STRING_TABLE, text.encode("utf-8")) for text in self.strings.table)
        out.append(_int_field(_TIME_NANOS, int(time_nanos)))
        out.append(_int_field(_DURATION_NANOS, int(duration_nanos)))
        out.append(period_msg)
        out.append(_int_field(_PERIOD, int(period)))
        return gzip.compress(b"".join(out), compresslevel=1, mtime=0)


_SAMPLE_KEY = _key(_SAMPLE, 2)
_LOCATIONS_KEY, _VALUES_KEY = _key(1, 2), _key(2, 2)  # Sample's packed repeated fields


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
    ``[node.self_count, round(node.self_value * value_scale)]``.
    """
    writer = _Writer(sample_types)
    # Pre-order walk carrying each node's stack as encoded location ids, leaf
    # first: a child's is its own id followed by its parent's.
    work: List[Tuple[CallNode, bytes]] = [
        (child, b"") for child in reversed(list(root.children.values()))
    ]
    while work:
        node, above = work.pop()
        ids = writer.location(node.frame) + above
        if node.children:
            work.extend((child, ids) for child in reversed(list(node.children.values())))
        count, value = int(node.self_count), round(node.self_value * value_scale)
        if count or value:
            writer.sample(ids, count, value)
    return writer.finish(
        period_type=period_type,
        period=period,
        time_nanos=time_nanos,
        duration_nanos=duration_nanos,
    )


def encode_pprof_samples(capture: SampleCapture) -> bytes:
    """A sampling capture as pprof: exact stacks, one sample per (stack, thread, task, span).

    Values are ``samples/count`` and ``wall|cpu/nanoseconds``; the period is
    the sampling interval. Labels: ``thread.id`` (number), ``thread.name``,
    ``task.name`` for a suspended asyncio task, ``trace_id`` and ``span_id``
    (hex) for samples taken in a span. Under ``clock="cpu"`` the unused time is
    one ``(idle)`` sample without labels.
    """
    clock = capture.clock
    writer = _Writer([("samples", "count"), (clock, "nanoseconds")])
    totals: Dict[Tuple[int, int, int], List[int]] = {}
    for track, stack, span, _, count, value in capture.rows():
        key = (track, stack, span)
        found = totals.get(key)
        if found is None:
            totals[key] = [count, value]
        else:
            found[0] += count
            found[1] += value
    frames, stacks = capture.frames, capture.stacks
    stack_ids: Dict[int, bytes] = {}
    track_labels: Dict[int, bytes] = {}
    span_labels: Dict[int, bytes] = {}
    for (track, stack, span), (count, value) in totals.items():
        ids = stack_ids.get(stack)
        if ids is None:
            ids = stack_ids[stack] = b"".join(
                writer.location(frames[index]) for index in reversed(stacks[stack])
            )
        labels = track_labels.get(track)
        if labels is None:
            where = capture.tracks[track]
            thread = capture.threads[where.thread]
            labels = writer.label("thread.id", number=thread.ident) + writer.label(
                "thread.name", thread.name
            )
            if where.task:
                labels += writer.label("task.name", where.task)
            track_labels[track] = labels
        if span:
            found_label = span_labels.get(span)
            if found_label is None:
                trace_id, span_id = capture.spans[span]
                found_label = span_labels[span] = writer.label(
                    "trace_id", f"{trace_id:032x}"
                ) + writer.label("span_id", f"{span_id:016x}")
            labels += found_label
        writer.sample(ids, count, value, labels)
    if capture.idle_ns > 0:
        writer.sample(writer.location(IDLE), capture.idle_count, capture.idle_ns)
    return writer.finish(
        period_type=(clock, "nanoseconds"),
        period=capture.interval_ns,
        time_nanos=capture.start_ns,
        duration_nanos=capture.duration_ns,
    )


def decode_pprof(data: bytes) -> tuple:
    """pprof ``profile.proto`` (gzip or not): the default (last) sample type as value."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings: List[str] = []
    sample_types: List[Tuple[int, int]] = []
    samples: List[Tuple[List[int], List[int]]] = []
    locations: Dict[int, List[int]] = {}
    functions: Dict[int, Tuple[int, int, int]] = {}
    time_nanos = duration_nanos = 0
    default_type = 0
    try:
        for number, _wire, value in fields(data):
            if number == 6 and isinstance(value, bytes):
                strings.append(value.decode("utf-8", "replace"))
            elif number == 1 and isinstance(value, bytes):
                vt = {n: v for n, _, v in fields(value)}
                sample_types.append((int(vt.get(1, 0)), int(vt.get(2, 0))))
            elif number == 2 and isinstance(value, bytes):
                locs: List[int] = []
                values: List[int] = []
                for n, w, v in fields(value):
                    if n == 1:
                        locs.extend(repeated_varints(w, v))
                    elif n == 2:
                        values.extend(signed64(x) for x in repeated_varints(w, v))
                samples.append((locs, values))
            elif number == 4 and isinstance(value, bytes):
                loc_id = 0
                lines: List[int] = []
                for n, _, v in fields(value):
                    if n == 1:
                        loc_id = int(v)  # type: ignore[arg-type]
                    elif n == 4 and isinstance(v, bytes):
                        line = {ln: lv for ln, _, lv in fields(v)}
                        functions_line = (int(line.get(1, 0)), signed64(int(line.get(2, 0))))
                        lines.extend(functions_line)
                locations[loc_id] = lines
            elif number == 5 and isinstance(value, bytes):
                fn = {n: v for n, _, v in fields(value)}
                functions[int(fn.get(1, 0))] = (
                    int(fn.get(2, 0)),
                    int(fn.get(4, 0)),
                    int(fn.get(5, 0)),
                )
            elif number == 9:
                time_nanos = signed64(int(value))  # type: ignore[arg-type]
            elif number == 10:
                duration_nanos = signed64(int(value))  # type: ignore[arg-type]
            elif number == 14:
                default_type = int(value)  # type: ignore[arg-type]
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a pprof profile: {exc}") from None
    if not strings or strings[0] != "":
        raise ValueError("not a pprof profile: the string table must start with ''")

    def text(index: int) -> str:
        return strings[index] if 0 <= index < len(strings) else ""

    types = [(text(t), text(u)) for t, u in sample_types]
    value_at = len(types) - 1
    if default_type:
        for index, (name, _) in enumerate(types):
            if name == text(default_type):
                value_at = index
    count_at = next((i for i, (_, u) in enumerate(types) if u == "count" and i != value_at), -1)
    measure, unit_name = types[value_at] if types else ("", "")
    unit, scale = {
        "nanoseconds": ("seconds", 1e-9),
        "microseconds": ("seconds", 1e-6),
        "milliseconds": ("seconds", 1e-3),
        "seconds": ("seconds", 1.0),
        "bytes": ("bytes", 1.0),
    }.get(unit_name, ("count", 1.0))
    frame_cache: Dict[int, List[Frame]] = {}

    def location_frames(loc_id: int) -> List[Frame]:
        cached = frame_cache.get(loc_id)
        if cached is None:
            lines = locations.get(loc_id, [])
            cached = []
            for i in range(0, len(lines), 2):  # innermost (inlined) first
                name, filename, _ = functions.get(lines[i], (0, 0, 0))
                cached.append(
                    Frame(text(name) or "(unknown)", text(filename), max(lines[i + 1], 0))
                )
            frame_cache[loc_id] = cached
        return cached

    root = new_root()
    for locs, values in samples:
        stack: List[Frame] = []
        for loc_id in locs:  # leaf first
            stack.extend(location_frames(loc_id))
        stack.reverse()
        amount = values[value_at] * scale if value_at < len(values) else 0.0
        count = values[count_at] if 0 <= count_at < len(values) else 1
        add_stack(root, stack, amount, count)
    return (root, unit, measure, time_nanos, duration_nanos)
