"""Object names: the ``{kind}-{start_time}.{extension}`` key and URL placeholders.

A URL path or key template may hold placeholders such as ``{service.name}``.
Each names a profile field (``kind``, ``start_time``, ``date``, ``extension``,
``name``), an attribute every profile carries (``process.pid``,
``profiling.trigger``), or a resource attribute: one of the default resource
(``OTEL_RESOURCE_ATTRIBUTES``...) or one in a namespace of the OpenTelemetry
semantic conventions (``service.version``, ``k8s.pod.name``...), which a
resource built in code may carry. Any other name is refused when the
exporter is made, listing the known ones; a known name without a value on a
profile becomes ``unknown`` (the exporter logs it once). Values are
filled per profile with characters that would change the path (``/``, ``..``,
anything outside a small safe set) replaced and long values shortened, so a
fleet writing to one bucket stays apart and nothing escapes the prefix.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Collection, Dict, List, Optional

from otel_profiling.profile import Profile, iso_millis

DEFAULT_KEY_TEMPLATE = "{kind}-{start_time}.{extension}"
PROFILE_FIELDS = ("kind", "start_time", "date", "extension", "name")
PROFILE_ATTRIBUTES = ("process.pid", "profiling.trigger")
# namespaces of resource attributes in the OpenTelemetry semantic conventions
RESOURCE_NAMESPACES = (
    "service",
    "deployment",
    "host",
    "os",
    "process",
    "container",
    "k8s",
    "cloud",
    "faas",
    "device",
    "telemetry",
    "webengine",
    "browser",
    "aws",
    "gcp",
    "azure",
    "heroku",
)
_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-=+@:,]")
_MAX_VALUE = 100  # characters of one filled placeholder; longer values keep a hash


def _safe(value: object) -> str:
    text = _UNSAFE.sub("_", str(value)).strip(".") or "_"
    if len(text) > _MAX_VALUE:  # a path component must stay short (ENAMETOOLONG)
        digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:10]
        text = f"{text[: _MAX_VALUE - 11]}-{digest}"
    return text


def placeholders(template: str) -> List[str]:
    """The placeholder names in ``template``; ``ValueError`` if a brace is misplaced."""
    names: List[str] = []
    position = 0
    while True:
        opening = template.find("{", position)
        closing = template.find("}", position)
        if opening < 0:
            if closing >= 0:
                raise ValueError(f"'}}' at position {closing} has no '{{'")
            return names
        if 0 <= closing < opening:
            raise ValueError(f"'}}' at position {closing} has no '{{'")
        if closing < 0:
            raise ValueError(f"'{{' at position {opening} is not closed")
        name = template[opening + 1 : closing]
        if not _NAME.match(name):
            raise ValueError(
                f"{{{name}}} is not a placeholder: placeholders are attribute names in braces, "
                "e.g. {service.name}"
            )
        names.append(name)
        position = closing + 1


def has_placeholders(template: str) -> bool:
    return bool(_PLACEHOLDER.search(template))


def known_placeholders(resource_keys: Collection[str]) -> List[str]:
    """Every name a placeholder may use, given the resource's attribute names."""
    return sorted(set(PROFILE_FIELDS) | set(PROFILE_ATTRIBUTES) | set(resource_keys))


def is_known(name: str, known: Collection[str]) -> bool:
    """Whether a placeholder may use ``name`` (``known`` or a semantic-convention namespace)."""
    return name in known or ("." in name and name.split(".", 1)[0] in RESOURCE_NAMESPACES)


def check_placeholders(template: str, what: str, known: Collection[str]) -> None:
    """``ValueError`` naming the first unknown placeholder in ``template`` and the known ones."""
    try:
        names = placeholders(template)
    except ValueError as exc:
        raise ValueError(f"Invalid {what}: {exc}.") from None
    for name in names:
        if not is_known(name, known):
            raise ValueError(
                f"Unknown placeholder {{{name}}} in the {what}. Known: "
                + ", ".join("{" + k + "}" for k in sorted(known))
                + ", and resource attributes of the semantic conventions ("
                + ", ".join(f"{n}.*" for n in RESOURCE_NAMESPACES)
                + "). Another resource attribute can be added with OTEL_RESOURCE_ATTRIBUTES."
            )


def placeholder_values(profile: Profile) -> Dict[str, object]:
    return {
        **dict(profile.attributes),
        **dict(profile.resource.attributes),
        "kind": profile.kind.value,
        "start_time": iso_millis(profile.start_time),
        "extension": profile.extension,
        "name": profile.name,
        "date": profile.start_time.strftime("%Y-%m-%d"),
    }


def fill_placeholders(
    template: str, profile: Profile, missing: Optional[Callable[[str], None]] = None
) -> str:
    """Replace ``{attribute}`` with the profile's (or its resource's) value, made path-safe.

    A name without a value on this profile becomes ``unknown``, and ``missing``
    is told its name (the exporter logs it once).
    """
    values = placeholder_values(profile)

    def repl(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            if missing is not None:
                missing(name)
            return "unknown"
        return _safe(values[name])

    return _PLACEHOLDER.sub(repl, template)


def validate_key_template(template: str, known: Optional[Collection[str]] = None) -> None:
    """Refuse a template that could leave the URL's prefix or names unknown placeholders."""
    if not template:
        raise ValueError("The key template is empty; the default is " + DEFAULT_KEY_TEMPLATE)
    if template.startswith("/") or template.startswith("\\"):
        raise ValueError(f"Key template {template!r} must be relative (no leading '/').")
    segments = re.split(r"[/\\]", template)
    if any(segment in (".", "..") for segment in segments):
        raise ValueError(
            f"Key template {template!r} must not contain '.' or '..' path segments: "
            "objects stay under the URL's prefix."
        )
    if known is None:
        try:
            placeholders(template)
        except ValueError as exc:
            raise ValueError(f"Invalid key template {template!r}: {exc}.") from None
    else:
        check_placeholders(template, f"key template {template!r}", known)


def collision_key(key: str, suffix: str) -> str:
    """``CPU_PROFILE-...Z.cpuprofile`` → ``CPU_PROFILE-...Z-{suffix}.cpuprofile``."""
    stem, dot, ext = key.rpartition(".")
    if not dot:
        return f"{key}-{suffix}"
    return f"{stem}-{suffix}.{ext}"
