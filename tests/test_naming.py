"""Object naming: the JavaScript ISO timestamp and placeholders, checked over many inputs."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource

from otel_profiling.exporters import FsspecProfileExporter
from otel_profiling.formats import default_format
from otel_profiling.profile import Profile, ProfileKind, iso_millis

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_iso_millis_is_javascript_toisostring(moment: datetime) -> None:
    text = iso_millis(moment)
    assert ISO.match(text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    # truncated (not rounded) to the millisecond, as Date.toISOString() does
    assert timedelta(0) <= moment - parsed < timedelta(milliseconds=1)


def test_iso_millis_pads_years_below_1000_as_javascript_does() -> None:
    # new Date(Date.UTC(999, 11, 31, 18, 30)).toISOString()
    moment = datetime(1000, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert iso_millis(moment) == "0999-12-31T18:30:00.000Z"


@given(st.text(min_size=1, max_size=40), st.sampled_from(list(ProfileKind)))
def test_placeholders_never_leave_the_prefix(service: str, kind: ProfileKind) -> None:
    exporter = FsspecProfileExporter("memory://bucket/{service.name}")
    profile = Profile(
        kind, default_format(kind), resource=Resource.create({"service.name": service})
    )
    path = exporter.path_for(profile)
    head, _, key = path.rpartition("/")
    assert head.startswith("/bucket/") and head.count("/") == 2
    assert head != "/bucket/.." and head != "/bucket/."
    assert key.startswith(f"{kind.value}-") and key.endswith("." + profile.extension)
