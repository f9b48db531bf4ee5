"""Checks an ``ExportProfilesServiceRequest`` against the OTLP profiles specification text.

Written from the comments of ``opentelemetry/proto/profiles/v1development/profiles.proto``
(v1.10.0, the version ``opentelemetry-proto`` 1.45 is generated from):

- every table of ``ProfilesDictionary`` has its zero value at index 0
  ("mapping_table[0] must always be zero value (Mapping{})", likewise for
  locations, functions, links, strings (``""``), attributes and stacks);
- every index (``*_strindex``, ``*_index``, ``*_indices``) is within its table;
- a ``Sample`` has at least one value or timestamp, and when both are present
  "they MUST contain the same number of elements";
- its timestamps "should fall within the Profile's time range";
- ``Link.trace_id`` is 16 bytes and ``Link.span_id`` 8 (both non-zero past index 0);
- ``profile_id`` is 16 bytes, not all zero; attribute keys unique per message.

``check(request)`` returns nothing and raises ``AssertionError`` naming the rule.
"""

from __future__ import annotations

from typing import Any, Iterable


def _zero(message: Any) -> bool:
    return message.ByteSize() == 0


def _in(index: int, table: Any, what: str) -> None:
    assert 0 <= index < len(table), f"{what} index {index} out of bounds (table of {len(table)})"


def _unique_keys(indices: Iterable[int], dictionary: Any, what: str) -> None:
    keys = [dictionary.attribute_table[i].key_strindex for i in indices]
    assert len(keys) == len(set(keys)), f"{what}: attribute keys must be unique"


def check(request: Any) -> None:
    d = request.dictionary
    for name in (
        "mapping_table",
        "location_table",
        "function_table",
        "link_table",
        "attribute_table",
        "stack_table",
    ):
        table = getattr(d, name)
        assert len(table) >= 1, f"{name} must hold its zero value at index 0"
        assert _zero(table[0]), f"{name}[0] must be the zero value"
    assert len(d.string_table) >= 1 and d.string_table[0] == "", 'string_table[0] must be ""'
    strings = d.string_table
    for i, mapping in enumerate(d.mapping_table):
        _in(mapping.filename_strindex, strings, f"mapping[{i}].filename_strindex")
        for a in mapping.attribute_indices:
            _in(a, d.attribute_table, f"mapping[{i}].attribute_indices")
    for i, function in enumerate(d.function_table):
        for field in ("name_strindex", "system_name_strindex", "filename_strindex"):
            _in(getattr(function, field), strings, f"function[{i}].{field}")
    for i, location in enumerate(d.location_table):
        _in(location.mapping_index, d.mapping_table, f"location[{i}].mapping_index")
        for line in location.lines:
            _in(line.function_index, d.function_table, f"location[{i}].line.function_index")
            assert line.line >= 0, f"location[{i}] has a negative line"
        for a in location.attribute_indices:
            _in(a, d.attribute_table, f"location[{i}].attribute_indices")
    for i, stack in enumerate(d.stack_table):
        for loc in stack.location_indices:
            _in(loc, d.location_table, f"stack[{i}].location_indices")
    for i, link in enumerate(d.link_table[1:], start=1):
        assert len(link.trace_id) == 16, f"link[{i}].trace_id must be 16 bytes"
        assert len(link.span_id) == 8, f"link[{i}].span_id must be 8 bytes"
        assert any(link.trace_id) and any(link.span_id), f"link[{i}] ids must not be zero"
    for i, attribute in enumerate(d.attribute_table):
        _in(attribute.key_strindex, strings, f"attribute[{i}].key_strindex")
        _in(attribute.unit_strindex, strings, f"attribute[{i}].unit_strindex")
    assert request.resource_profiles, "a request carries at least one ResourceProfiles"
    for rp in request.resource_profiles:
        for sp in rp.scope_profiles:
            for profile in sp.profiles:
                _check_profile(profile, d)


def _check_profile(profile: Any, d: Any) -> None:
    strings = d.string_table
    for vt, what in ((profile.sample_type, "sample_type"), (profile.period_type, "period_type")):
        _in(vt.type_strindex, strings, f"{what}.type_strindex")
        _in(vt.unit_strindex, strings, f"{what}.unit_strindex")
    assert strings[profile.sample_type.type_strindex], "sample_type needs a type"
    assert len(profile.profile_id) == 16, "profile_id must be 16 bytes"
    assert any(profile.profile_id), "an all-zero profile_id is invalid"
    assert profile.time_unix_nano > 0, "time_unix_nano must be set"
    start = profile.time_unix_nano
    end = start + profile.duration_nano
    for a in profile.attribute_indices:
        _in(a, d.attribute_table, "profile.attribute_indices")
    _unique_keys(profile.attribute_indices, d, "profile")
    for k, sample in enumerate(profile.samples):
        _in(sample.stack_index, d.stack_table, f"sample[{k}].stack_index")
        _in(sample.link_index, d.link_table, f"sample[{k}].link_index")
        for a in sample.attribute_indices:
            _in(a, d.attribute_table, f"sample[{k}].attribute_indices")
        _unique_keys(sample.attribute_indices, d, f"sample[{k}]")
        assert sample.values or sample.timestamps_unix_nano, (
            f"sample[{k}] must have at least one value or timestamp"
        )
        if sample.values and sample.timestamps_unix_nano:
            assert len(sample.values) == len(sample.timestamps_unix_nano), (
                f"sample[{k}]: values and timestamps must have the same number of elements"
            )
        for t in sample.timestamps_unix_nano:
            assert start <= t <= end, (
                f"sample[{k}] timestamp {t} outside the profile's window [{start}, {end}]"
            )
