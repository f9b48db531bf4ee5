"""Object names: the ``{kind}-{start_time}.{extension}`` key and URL placeholders.

A URL path may hold resource placeholders such as ``{service.name}``; they are
filled per profile, with characters that would change the path (``/``, ``..``)
replaced, so a fleet writing to one bucket stays apart and nothing escapes the
prefix.
"""

from __future__ import annotations

import re
import string
from typing import Mapping

from otel_profiling.profile import Profile, iso_millis

DEFAULT_KEY_TEMPLATE = "{kind}-{start_time}.{extension}"
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-=+@:,]")


def _safe(value: object) -> str:
    text = _UNSAFE.sub("_", str(value)).strip(".") or "_"
    return text


def has_placeholders(template: str) -> bool:
    return bool(_PLACEHOLDER.search(template))


def fill_placeholders(template: str, profile: Profile) -> str:
    """Replace ``{attribute}`` with the profile's resource (or profile) attribute."""
    values: Mapping[str, object] = {
        **dict(profile.attributes),
        **dict(profile.resource.attributes),
        "kind": profile.kind.value,
        "start_time": iso_millis(profile.start_time),
        "extension": profile.extension,
        "name": profile.name,
        "date": profile.start_time.strftime("%Y-%m-%d"),
    }

    def repl(match: re.Match) -> str:
        return _safe(values.get(match.group(1), "unknown"))

    return _PLACEHOLDER.sub(repl, template)


def validate_key_template(template: str) -> None:
    """Reject a template that is not a plain ``str.format``-like pattern, naming the fix."""
    try:
        list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"Invalid key template {template!r}: {exc}") from None
    if template.startswith("/"):
        raise ValueError(f"Key template {template!r} must be relative (no leading '/').")


def collision_key(key: str, suffix: str) -> str:
    """``CPU_PROFILE-...Z.cpuprofile`` → ``CPU_PROFILE-...Z-{suffix}.cpuprofile``."""
    stem, dot, ext = key.rpartition(".")
    if not dot:
        return f"{key}-{suffix}"
    return f"{stem}-{suffix}.{ext}"
