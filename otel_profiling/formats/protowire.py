"""A minimal protobuf wire-format decoder, for the process context (a memory mapping read raw).

Only the four wire types a ``process_context.proto`` message uses are handled
(varint, 64-bit, length-delimited, 32-bit); a truncated or malformed message
raises ``ValueError``.
"""

from __future__ import annotations

from typing import Iterator, List, Tuple, Union

Field = Tuple[int, int, Union[int, bytes]]


def read_varint(data: bytes, pos: int) -> Tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint in protobuf message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits in protobuf message")


def fields(data: bytes) -> Iterator[Field]:
    """``(field_number, wire_type, value)`` for each field of one message, in order."""
    pos = 0
    end = len(data)
    while pos < end:
        tag, pos = read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: Union[int, bytes]
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > end:
                raise ValueError("truncated length-delimited field in protobuf message")
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield number, wire, value


def signed64(value: int) -> int:
    """An ``int64`` stored as an unsigned varint (two's complement) → Python int."""
    return value - (1 << 64) if value >= 1 << 63 else value


def repeated_varints(wire: int, value: Union[int, bytes]) -> List[int]:
    """A repeated integer field, whether packed (one bytes value) or not (one int)."""
    if wire == 0:
        assert isinstance(value, int)
        return [value]
    assert isinstance(value, bytes)
    out: List[int] = []
    pos = 0
    while pos < len(value):
        number, pos = read_varint(value, pos)
        out.append(number)
    return out
