"""pprof (``profile.proto``, gzip-compressed) from a call tree, encoded by hand.

The protobuf wire format is small enough to write directly (varints and
length-delimited fields), which keeps the library free of generated code and
of a compiler. Field numbers follow ``profile.proto``; string 0 is ``""``,
ids start at 1 and each sample lists its locations leaf first, as pprof,
``go tool pprof``, Pyroscope and speedscope expect.
"""

from __future__ import annotations

import gzip
from typing import Dict, List, Sequence, Tuple

from otel_profiling.formats.calltree import CallNode, Frame

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
    if len(sample_types) != 2:
        raise ValueError("encode_pprof writes two values per sample: give two sample types")
    strings = _Strings()
    out: List[bytes] = [_bytes_field(_SAMPLE_TYPE, _value_type(strings, t)) for t in sample_types]
    functions: Dict[Tuple[str, str], int] = {}
    locations: Dict[Frame, bytes] = {}  # a frame's location id, varint-encoded
    function_msgs: List[bytes] = []
    location_msgs: List[bytes] = []

    def new_location(frame: Frame) -> bytes:
        fkey = (frame.function, frame.filename)
        func_id = functions.get(fkey)
        if func_id is None:
            func_id = functions[fkey] = len(functions) + 1
            name = strings(frame.function)
            function_msgs.append(
                _int_field(1, func_id)
                + _int_field(2, name)
                + _int_field(3, name)
                + _int_field(4, strings(frame.filename))
            )
        loc_id = len(locations) + 1
        line = _int_field(1, func_id) + _int_field(2, max(frame.lineno, 0))
        location_msgs.append(_int_field(1, loc_id) + _bytes_field(4, line))
        encoded = locations[frame] = _varint(loc_id)
        return encoded

    # Pre-order walk carrying each node's stack as encoded location ids, leaf
    # first: a child's is its own id followed by its parent's.
    sample_key = _key(_SAMPLE, 2)
    locations_key, values_key = _key(1, 2), _key(2, 2)  # Sample's packed repeated fields
    work: List[Tuple[CallNode, bytes]] = [
        (child, b"") for child in reversed(list(root.children.values()))
    ]
    while work:
        node, above = work.pop()
        frame = node.frame
        own = locations.get(frame)
        ids = (own if own is not None else new_location(frame)) + above
        if node.children:
            work.extend((child, ids) for child in reversed(list(node.children.values())))
        count, value = int(node.self_count), round(node.self_value * value_scale)
        if not (count or value):
            continue
        values = _varint(count) + _varint(value)
        sample = (
            locations_key + _varint(len(ids)) + ids + values_key + _varint(len(values)) + values
        )
        out.append(sample_key + _varint(len(sample)) + sample)
    out.extend(_bytes_field(_LOCATION, msg) for msg in location_msgs)
    out.extend(_bytes_field(_FUNCTION, msg) for msg in function_msgs)
    period_msg = _bytes_field(_PERIOD_TYPE, _value_type(strings, period_type))
    out.extend(_bytes_field(_STRING_TABLE, text.encode("utf-8")) for text in strings.table)
    out.append(_int_field(_TIME_NANOS, int(time_nanos)))
    out.append(_int_field(_DURATION_NANOS, int(duration_nanos)))
    out.append(period_msg)
    out.append(_int_field(_PERIOD, int(period)))
    return gzip.compress(b"".join(out), compresslevel=1, mtime=0)
