"""Profiles as the OTLP profiles model (``opentelemetry.proto.profiles.v1development``).

The conversion starts from the payload bytes, never from a profiler's memory:
a profile read back from the spool in a later process has only its bytes. So
every fact the request carries must be in the payload:

* **pprof from the sampling engine** keeps everything: one pprof sample per run
  of identical samples, with labels ``thread.id``, ``thread.name``,
  ``trace_id``/``span_id`` and ``timestamp`` (the run's first sample, unix ns).
  Each run becomes ``count`` OTLP events: timestamps spaced by the run's
  weight per sample (wall clock) or by the sampling period (cpu clock),
  clamped into the profile's window; values the run's nanoseconds split among
  them. Samples of one (stack, thread, span) share one OTLP ``Sample``.
* **cpuprofile** (the default CPU format) keeps the timeline and the threads
  (each thread a ``name (thread ident)`` node under the root), not trace ids:
  timestamps and thread attributes, no links. Choose ``pprof`` for links.
* any other CPU or heap payload is read as a call tree (``formats.read_profile``):
  aggregated values, no timestamps.

A CPU profile is one OTLP profile (``wall`` or ``cpu`` nanoseconds) whose
period, in any format, is what its pprof says (``to_pprof``): the sampling
interval (0 for yappi, which does not sample; a yappi pprof's own). A heap
profile is two (``inuse_space`` bytes and ``inuse_objects`` count), as the
OTLP ``Profile`` has one sample type; from a format that holds no object
counts (``.heapprofile``, folded, speedscope), only ``inuse_space``. All
profiles of a request share one ``ProfilesDictionary`` whose tables start
with their zero value, locations point to the zero mapping and carry
``profile.frame.type=cpython``, and stacks and locations are deduplicated.
A heap snapshot (an object graph) has no OTLP shape: ``UnsupportedProfile``.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceProto

from otel_profiling.formats import ProfileFormatError, read_profile
from otel_profiling.formats.calltree import Frame
from otel_profiling.formats.cpuprofile import CLOCK_KEY
from otel_profiling.formats.pprof import TIMESTAMP_LABEL, parse_profile
from otel_profiling.formats.to_pprof import cpu_period
from otel_profiling.profile import Profile, ProfileKind
from otel_profiling.version import __version__

SCOPE_NAME = "otel_profiling"
THREAD_ID = "thread.id"
THREAD_NAME = "thread.name"
FRAME_TYPE = "profile.frame.type"
CPYTHON = "cpython"
_THREAD_FRAME = re.compile(r"^(?P<name>.*) \(thread (?P<ident>\d+)\)$")


class UnsupportedProfile(ValueError):
    """A profile kind or payload with no OTLP shape (the heap snapshot)."""


@dataclass
class Event:
    """Samples of one stack in one context: values with (optionally) their timestamps."""

    frames: Tuple[Frame, ...]  # leaf first
    thread: Optional[Tuple[int, str]] = None
    link: Optional[Tuple[int, int]] = None  # (trace id, span id)
    values: List[int] = field(default_factory=list)
    timestamps: List[int] = field(default_factory=list)


@dataclass
class Decoded:
    """One OTLP profile's worth of content, before interning."""

    sample_type: Tuple[str, str]
    period_type: Tuple[str, str]
    period: int
    events: List[Event]


# -- decoding payloads --------------------------------------------------------------------------


def _run_events(
    count: int, value: int, start: int, step: int, window: Tuple[int, int]
) -> Tuple[List[int], List[int]]:
    """``count`` events of a run: values summing to ``value``, timestamps inside ``window``."""
    count = max(count, 1)
    share, extra = divmod(max(value, 0), count)
    values = [share + (1 if k < extra else 0) for k in range(count)]
    low, high = window
    stamps = [min(max(start + k * step, low), high) for k in range(count)]
    return values, stamps


def _decode_sampling_pprof(data: bytes, window: Tuple[int, int]) -> Decoded:
    prof = parse_profile(data)
    strings = list(prof.string_table)

    def text(index: int) -> str:
        return strings[index] if 0 <= index < len(strings) else ""

    types = [(text(t.type), text(t.unit)) for t in prof.sample_type]
    time_at = next((i for i, (_, u) in enumerate(types) if u == "nanoseconds"), len(types) - 1)
    count_at = next((i for i, (t, u) in enumerate(types) if (t, u) == ("samples", "count")), -1)
    clock = types[time_at][0] if types else "wall"
    period = int(prof.period)
    functions = {f.id: (text(f.name) or "(unknown)", text(f.filename)) for f in prof.function}
    location_frames: Dict[int, Tuple[Frame, ...]] = {
        location.id: tuple(
            Frame(*functions.get(line.function_id, ("(unknown)", "")), max(line.line, 0))
            for line in location.line
        )
        for location in prof.location
    }
    grouped: Dict[Tuple[Any, ...], Event] = {}
    for pprof_sample in prof.sample:
        stack = tuple(
            frame for loc in pprof_sample.location_id for frame in location_frames.get(loc, ())
        )
        labels: Dict[str, str] = {}
        numbers: Dict[str, int] = {}
        for label in pprof_sample.label:
            if label.str:
                labels[text(label.key)] = text(label.str)
            else:
                numbers[text(label.key)] = int(label.num)
        thread = (numbers[THREAD_ID], labels.get(THREAD_NAME, "")) if THREAD_ID in numbers else None
        link = None
        if "trace_id" in labels and "span_id" in labels:
            try:
                link = (int(labels["trace_id"], 16), int(labels["span_id"], 16))
            except ValueError:
                link = None
        values = pprof_sample.value
        value = int(values[time_at]) if time_at < len(values) else 0
        count = int(values[count_at]) if 0 <= count_at < len(values) else 1
        group = (stack, thread, link, labels.get("task.name", ""))
        event = grouped.get(group)
        if event is None:
            event = grouped[group] = Event(stack, thread, link)
        if TIMESTAMP_LABEL in numbers:
            step = value // max(count, 1) if clock == "wall" else period
            run_values, stamps = _run_events(count, value, numbers[TIMESTAMP_LABEL], step, window)
            event.values.extend(run_values)
            event.timestamps.extend(stamps)
        else:
            event.values.append(value)
    # an event list mixing timed and untimed runs cannot be sent as is: drop its timestamps
    for event in grouped.values():
        if event.timestamps and len(event.timestamps) != len(event.values):
            event.values = [sum(event.values)]
            event.timestamps = []
    unit_type = (clock, "nanoseconds")
    return Decoded(unit_type, unit_type, period, list(grouped.values()))


def _decode_cpuprofile(data: bytes, window: Tuple[int, int]) -> Decoded:
    """``.cpuprofile``: one event per sample, at its own timestamp, weighted by its delta."""
    try:
        doc = json.loads(data)
        nodes = {node["id"]: node for node in doc["nodes"]}
        samples: List[int] = list(doc.get("samples") or [])
        deltas: List[int] = list(doc.get("timeDeltas") or [])
        start_us = int(doc.get("startTime", 0))
        end_us = int(doc.get("endTime", start_us))
        extra = doc.get(CLOCK_KEY)
        clock = str(extra.get("clock") or "wall") if isinstance(extra, dict) else "wall"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProfileFormatError(f"not a cpuprofile: {exc}") from None
    parent: Dict[int, int] = {}
    for node in nodes.values():
        for child in node.get("children", []):
            parent[child] = node["id"]

    paths: Dict[int, Tuple[Tuple[Frame, ...], Optional[Tuple[int, str]]]] = {}

    def path_of(node_id: int) -> Tuple[Tuple[Frame, ...], Optional[Tuple[int, str]]]:
        found = paths.get(node_id)
        if found is None:
            chain: List[Dict[str, Any]] = []
            current: Optional[int] = node_id
            while current is not None:
                chain.append(nodes[current])
                current = parent.get(current)
            chain.pop()  # the root
            thread = None
            if chain:
                match = _THREAD_FRAME.match(chain[-1]["callFrame"].get("functionName", ""))
                if match:
                    thread = (int(match["ident"]), match["name"])
                    chain.pop()
            frames = []
            for node in chain:  # leaf first
                call = node["callFrame"]
                line = int(call.get("lineNumber", -1))
                frames.append(
                    Frame(
                        call.get("functionName") or "(anonymous)",
                        call.get("url", ""),
                        line + 1 if line >= 0 else 0,
                    )
                )
            found = paths[node_id] = (tuple(frames), thread)
        return found

    times: List[int] = []
    stamp = start_us
    for delta in deltas[: len(samples)]:
        stamp += int(delta)
        times.append(stamp)
    # a sample lasts until the next one; the last until the profile's end
    grouped: Dict[Tuple[Any, ...], Event] = {}
    low, high = window
    for index, node_id in enumerate(samples[: len(times)]):
        following = times[index + 1] if index + 1 < len(times) else max(end_us, times[index])
        frames, thread = path_of(node_id)
        if not frames:
            continue
        key = (frames, thread)
        event = grouped.get(key)
        if event is None:
            event = grouped[key] = Event(frames, thread)
        event.values.append(max(following - times[index], 0) * 1000)
        event.timestamps.append(min(max(times[index] * 1000, low), high))
    kind = (clock, "nanoseconds")
    return Decoded(kind, kind, 0, list(grouped.values()))


def _decode_tree(data: bytes, fmt: str, kind: ProfileKind, clock: str = "cpu") -> List[Decoded]:
    """Any readable payload as aggregated values per stack (no timestamps, no links)."""
    tree = read_profile(data, fmt=fmt)
    by_value: Dict[Tuple[Frame, ...], Tuple[int, int]] = {}
    heap = kind is ProfileKind.HEAP_PROFILE
    scale = 1e9 if tree.unit == "seconds" else 1.0
    for path, node in tree.root.stacks():
        if node.self_value or node.self_count:
            stack = tuple(reversed(path))
            value, count = by_value.get(stack, (0, 0))
            by_value[stack] = (value + round(node.self_value * scale), count + node.self_count)
    if heap:
        space = [Event(s, values=[v]) for s, (v, _) in by_value.items() if v]
        decoded = [Decoded(("inuse_space", "bytes"), ("space", "bytes"), 1, space)]
        if tree.has_counts:  # not from .heapprofile, folded or speedscope
            objects = [Event(s, values=[c]) for s, (_, c) in by_value.items() if c]
            decoded.append(Decoded(("inuse_objects", "count"), ("space", "bytes"), 1, objects))
        return decoded
    unit = (clock, "nanoseconds") if tree.unit == "seconds" else ("samples", "count")
    events = [Event(s, values=[v]) for s, (v, _) in by_value.items() if v]
    return [Decoded(unit, unit, 0, events)]


def _window(profile: Profile) -> Tuple[int, int]:
    start = int(profile.start_time.timestamp() * 1e9)
    end = int((profile.end_time or profile.start_time).timestamp() * 1e9)
    return start, max(end, start)


def decode_profile(profile: Profile) -> List[Decoded]:
    """The OTLP profiles ``profile``'s payload becomes; ``UnsupportedProfile`` if none."""
    if profile.kind is ProfileKind.HEAP_SNAPSHOT:
        raise UnsupportedProfile(
            "a heap snapshot is an object graph, which OTLP profiles cannot carry"
        )
    window = _window(profile)
    fmt = profile.format
    if profile.kind is not ProfileKind.CPU_PROFILE:
        return _decode_tree(profile.data, fmt, profile.kind)
    if fmt in ("pstats", "callgrind"):
        raise UnsupportedProfile(
            f"the {fmt} format is not converted to OTLP: use cpuprofile or pprof"
        )
    # the period is what the profile's pprof says (``to_pprof``): a pprof payload's own,
    # else the sampling interval of its attributes (0 for yappi, which does not sample)
    period_type, period = cpu_period(profile)
    if fmt == "pprof":
        prof = _decode_sampling_pprof(profile.data, window)
        if any(event.thread or event.timestamps for event in prof.events):
            return [prof]
        period_type, period = prof.period_type, prof.period
    decoded = None
    if fmt == "cpuprofile":
        decoded = _decode_cpuprofile(profile.data, window)
    if decoded is None or not decoded.events:
        (decoded,) = _decode_tree(profile.data, fmt, profile.kind, period_type[0])
    decoded.period_type, decoded.period = period_type, period
    return [decoded]


# -- building the request ------------------------------------------------------------------------


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(_any_value(item) for item in value)
        return out
    return AnyValue(string_value=str(value))


def key_values(attributes: Any) -> List[KeyValue]:
    return [KeyValue(key=str(k), value=_any_value(v)) for k, v in dict(attributes or {}).items()]


class Dictionary:
    """The shared ``ProfilesDictionary``: every table interned, index 0 its zero value."""

    def __init__(self) -> None:
        self.proto = pb.ProfilesDictionary()
        self.proto.mapping_table.add()
        self.proto.location_table.add()
        self.proto.function_table.add()
        self.proto.link_table.add()
        self.proto.string_table.append("")
        self.proto.attribute_table.add()
        self.proto.stack_table.add()
        self._strings: Dict[str, int] = {"": 0}
        self._functions: Dict[Tuple[str, str, int], int] = {}
        self._locations: Dict[Frame, int] = {}
        self._stacks: Dict[Tuple[int, ...], int] = {}
        self._links: Dict[Tuple[int, int], int] = {}
        self._attributes: Dict[Tuple[str, Any], int] = {}

    def string(self, text: str) -> int:
        found = self._strings.get(text)
        if found is None:
            found = self._strings[text] = len(self.proto.string_table)
            self.proto.string_table.append(text)
        return found

    def location(self, frame: Frame) -> int:
        found = self._locations.get(frame)
        if found is None:
            fkey = (frame.function, frame.filename, 0)
            function = self._functions.get(fkey)
            if function is None:
                function = self._functions[fkey] = len(self.proto.function_table)
                self.proto.function_table.add(
                    name_strindex=self.string(frame.function),
                    filename_strindex=self.string(frame.filename),
                )
            found = self._locations[frame] = len(self.proto.location_table)
            # mapping_index 0: the zero mapping (Python code has no binary mapping)
            self.proto.location_table.add(
                lines=[pb.Line(function_index=function, line=max(frame.lineno, 0))],
                attribute_indices=[self.attribute(FRAME_TYPE, CPYTHON)],
            )
        return found

    def stack(self, frames: Sequence[Frame]) -> int:
        key = tuple(self.location(frame) for frame in frames)
        found = self._stacks.get(key)
        if found is None:
            found = self._stacks[key] = len(self.proto.stack_table)
            self.proto.stack_table.add(location_indices=key)
        return found

    def link(self, trace_id: int, span_id: int) -> int:
        if not trace_id or not span_id:
            return 0
        key = (trace_id, span_id)
        found = self._links.get(key)
        if found is None:
            found = self._links[key] = len(self.proto.link_table)
            self.proto.link_table.add(
                trace_id=trace_id.to_bytes(16, "big"), span_id=span_id.to_bytes(8, "big")
            )
        return found

    def attribute(self, key: str, value: Any) -> int:
        marker = (key, (type(value).__name__, value))
        found = self._attributes.get(marker)
        if found is None:
            found = self._attributes[marker] = len(self.proto.attribute_table)
            self.proto.attribute_table.add(key_strindex=self.string(key), value=_any_value(value))
        return found

    def value_type(self, kind: Tuple[str, str]) -> pb.ValueType:
        return pb.ValueType(type_strindex=self.string(kind[0]), unit_strindex=self.string(kind[1]))


def _profile_message(profile: Profile, decoded: Decoded, table: Dictionary) -> pb.Profile:
    start, end = _window(profile)
    message = pb.Profile(
        sample_type=table.value_type(decoded.sample_type),
        time_unix_nano=start,
        duration_nano=end - start,
        period_type=table.value_type(decoded.period_type),
        period=decoded.period,
        profile_id=os.urandom(16),
        original_payload_format=profile.format,
    )
    attrs = dict(profile.attributes)
    attrs.setdefault("profiling.kind", profile.kind.value)
    if profile.trigger:
        attrs.setdefault("profiling.trigger", profile.trigger)
    message.attribute_indices.extend(
        table.attribute(k, tuple(v) if isinstance(v, (list, tuple)) else v)
        for k, v in attrs.items()
    )
    for event in decoded.events:
        sample = message.samples.add(stack_index=table.stack(event.frames))
        if event.thread is not None:
            sample.attribute_indices.extend(
                (table.attribute(THREAD_ID, event.thread[0]),)
                + ((table.attribute(THREAD_NAME, event.thread[1]),) if event.thread[1] else ())
            )
        if event.link is not None:
            sample.link_index = table.link(*event.link)
        sample.values.extend(event.values)
        sample.timestamps_unix_nano.extend(event.timestamps)
    return message


def _scope_key(profile: Profile) -> Tuple[str, str]:
    scope = profile.instrumentation_scope
    if scope is None:
        return SCOPE_NAME, __version__
    return scope.name, scope.version or ""


def build_request(
    profiles: Iterable[Tuple[Profile, List[Decoded]]],
) -> ExportProfilesServiceRequest:
    """One request: profiles grouped by resource then scope, one shared dictionary."""
    table = Dictionary()
    request = ExportProfilesServiceRequest()
    by_resource: Dict[Tuple[Any, ...], Dict[Tuple[str, str], List[pb.Profile]]] = defaultdict(
        lambda: defaultdict(list)
    )
    resources: Dict[Tuple[Any, ...], Profile] = {}
    for profile, decoded in profiles:
        attrs = dict(profile.resource.attributes)
        rkey = tuple(sorted((str(k), repr(v)) for k, v in attrs.items()))
        resources.setdefault(rkey, profile)
        for item in decoded:
            by_resource[rkey][_scope_key(profile)].append(_profile_message(profile, item, table))
    for rkey, scopes in by_resource.items():
        owner = resources[rkey]
        resource_profiles = request.resource_profiles.add(
            resource=ResourceProto(attributes=key_values(owner.resource.attributes)),
            schema_url=owner.resource.schema_url or "",
        )
        for (name, version), messages in scopes.items():
            scope_profiles = resource_profiles.scope_profiles.add(
                scope=InstrumentationScope(name=name, version=version)
            )
            scope_profiles.profiles.extend(messages)
    request.dictionary.CopyFrom(table.proto)
    return request
