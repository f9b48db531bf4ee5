"""Object names, both ways: ``ProfileNamer.key(profile)`` and ``ProfileNamer.parse(key)``.

The one home of the naming rule: the exporter names objects with it, the
command line finds them with it (``ls``, ``merge``, ``diff``), the HTTP
trigger names downloads with it. The default key is
``{kind}-{start_time}.{extension}``; any template that holds ``{kind}`` and
``{start_time}`` can be parsed back.

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
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Protocol, Tuple

from otel_profiling.kinds import ProfileKind


class Named(Protocol):
    """What naming reads of a profile (``otel_profiling.Profile`` has it all)."""

    kind: ProfileKind
    name: str
    start_time: datetime
    resource: Any

    @property
    def extension(self) -> str: ...

    @property
    def attributes(self) -> Mapping[str, Any]: ...


def iso_millis(moment: datetime) -> str:
    """``moment`` as JavaScript's ``Date.toISOString()``: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"  # years below 1000 padded, as JS does


def parse_iso_millis(text: str) -> datetime:
    """The inverse of ``iso_millis``; ``ValueError`` if ``text`` is not in that form."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


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


def placeholder_values(profile: Named) -> Dict[str, object]:
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
    template: str, profile: Named, missing: Optional[Callable[[str], None]] = None
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
    """``CPU_PROFILE-...Z.cpuprofile`` → ``CPU_PROFILE-...Z-{suffix}.cpuprofile``.

    ``suffix`` is ``1`` to ``9`` then 8 hex digits (the exporter's choice);
    ``without_collision_suffix`` undoes it.
    """
    stem, dot, ext = key.rpartition(".")
    if not dot:
        return f"{key}-{suffix}"
    return f"{stem}-{suffix}.{ext}"


_SUFFIX = re.compile(r"(?s)(.*)-(?:\d{1,2}|[0-9a-f]{8})\Z")


def without_collision_suffix(key: str) -> Optional[str]:
    """``key`` without the suffix ``collision_key`` added, or ``None`` if it has none."""
    stem, dot, ext = key.rpartition(".")
    if not dot:
        stem, ext = key, ""
    match = _SUFFIX.match(stem)
    if match is None:
        return None
    return match.group(1) + dot + ext


_KIND = "|".join(kind.value for kind in ProfileKind)
_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
_FIELD_PATTERNS = {
    "kind": f"(?:{_KIND})",
    "start_time": _ISO,
    "date": r"\d{4}-\d\d-\d\d",
    "extension": r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?",
}
_VALUE = r"[A-Za-z0-9_.\-=+@:,]+?"  # what ``_safe`` leaves of any value
_ANY_KIND = re.compile(rf"(?<![A-Za-z0-9])({_KIND})(?![A-Za-z0-9])")
_ANY_START = re.compile(rf"(?<![0-9])({_ISO})")


@dataclass(frozen=True)
class ParsedKey:
    """What an object name tells of its profile, without reading it."""

    kind: ProfileKind
    start_time: datetime
    extension: Optional[str]
    fields: Dict[str, str] = field(default_factory=dict)  # every placeholder's text


class ProfileNamer:
    """Names objects from a key template, and reads kind and start time back from names.

    ``key(profile)`` fills the template (values made path-safe);
    ``parse(key)`` recognises a name this namer made (also with a collision
    suffix, and below any prefix) when the template holds ``{kind}`` and
    ``{start_time}``. ``find(key)`` recognises a name made by any such
    template, which is how the command line lists objects whose template
    it does not know.
    """

    def __init__(self, template: str = DEFAULT_KEY_TEMPLATE) -> None:
        validate_key_template(template)
        self.template = template
        self._pattern, self._groups = _compile(template)

    def __repr__(self) -> str:
        return f"ProfileNamer({self.template!r})"

    @property
    def parseable(self) -> bool:
        """Whether names made from this template give back kind and start time."""
        return self._pattern is not None

    def key(self, profile: Named, missing: Optional[Callable[[str], None]] = None) -> str:
        """The object name of ``profile``, relative to the exporter's URL."""
        return fill_placeholders(self.template, profile, missing)

    def parse(self, key: str) -> Optional[ParsedKey]:
        """Kind, start time, extension and fields of a name this namer made, else ``None``."""
        if self._pattern is None:
            return None
        for candidate in (key, without_collision_suffix(key)):
            match = self._pattern.search(candidate) if candidate else None
            if match is None:
                continue
            fields = {name: match.group(group) for group, name in self._groups}
            try:
                start = parse_iso_millis(fields["start_time"])
            except ValueError:  # 2026-13-45...: not a time, not a profile's name
                continue
            return ParsedKey(
                ProfileKind(fields["kind"]), start, fields.get("extension") or None, fields
            )
        return None

    def find(self, key: str) -> Optional[ParsedKey]:
        """``parse``, else kind and start time found anywhere in ``key`` (any template)."""
        parsed = self.parse(key)
        if parsed is not None:
            return parsed
        kind = _ANY_KIND.search(key)
        start = _ANY_START.search(key)
        if kind is None or start is None:
            return None
        try:
            moment = parse_iso_millis(start.group(1))
        except ValueError:
            return None
        base = posixpath.basename(key)
        _, dot, extension = base.rpartition(".")
        if not dot or base.endswith(start.group(1)) or not extension.isalnum():
            extension = ""
        return ParsedKey(ProfileKind(kind.group(1)), moment, extension or None, {})


def _compile(template: str) -> Tuple[Optional[re.Pattern[str]], List[Tuple[str, str]]]:
    """A pattern matching the names ``template`` makes (at the end of a path), and its groups."""
    names = placeholders(template)
    if "kind" not in names or "start_time" not in names:
        return None, []
    parts: List[str] = []
    groups: List[Tuple[str, str]] = []
    seen: Dict[str, str] = {}
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        name = match.group(1)
        if name in seen:
            parts.append(f"(?P={seen[name]})")
        else:
            group = f"g{len(groups)}"
            seen[name] = group
            groups.append((group, name))
            parts.append(f"(?P<{group}>{_FIELD_PATTERNS.get(name, _VALUE)})")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile(r"(?:\A|(?<=/))" + "".join(parts) + r"\Z"), groups


DEFAULT_NAMER = ProfileNamer()
