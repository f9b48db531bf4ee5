"""Where a running profile will be stored, so spans can point at it before it ends.

A profile's object URL is known at start (the exporter names objects from the
kind, start time and resource), so the agent records it as the profile
attribute ``profiling.profile.url``; ``ProfilingSpanProcessor`` copies it onto
spans. The URL is the one the object gets unless a name clash forces a suffix.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from otel_profiling.profile import Profile
from otel_profiling.redact import redact_url

_logger = logging.getLogger(__name__)

PROFILE_URL = "profiling.profile.url"
PROFILE_URLS = "profiling.profile.urls"
TRACE_IDS = "profiling.trace_ids"
SPAN_IDS = "profiling.span_ids"
THREAD_IDS = "profiling.thread_ids"
THREAD_ID = "thread.id"  # OpenTelemetry semantic conventions
THREAD_NAME = "thread.name"
LINKS_DROPPED = "profiling.links.dropped"


def profile_url(processors: Iterable[object], profile: Profile) -> Optional[str]:
    """The URL the first processor's exporter that names objects will write ``profile`` to."""
    for processor in processors:
        exporter = getattr(processor, "exporter", None)
        url_for = getattr(exporter, "url_for", None)
        if not callable(url_for):
            continue
        try:
            return redact_url(str(url_for(profile)))  # spans travel far: no credentials
        except Exception as exc:  # noqa: BLE001 - a missing link must not stop profiling
            _logger.debug("No URL for %s from %s: %s", profile.key, type(exporter).__name__, exc)
    return None
