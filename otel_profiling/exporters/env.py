"""Exporters chosen by ``OTEL_PROFILES_EXPORTER``, including plugins from entry points.

Built in: ``fsspec`` (default; settings ``OTEL_EXPORTER_FSSPEC_PROFILES_*``),
``otlp`` (extra ``otlp``; settings ``OTEL_EXPORTER_OTLP_PROFILES_*``), ``console``
and ``none``. Any other name is looked up in the entry-point group
``otel_profiling_exporter``, whose value is a class or callable taking no
argument and returning a ``ProfileExporter`` (the plugin reads its own
settings, as OpenTelemetry exporters do). A name that cannot be loaded is
logged once, naming the variable and the known names, and left out: a bad
setting never stops the application.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from typing import Any, Callable, Dict, List, Optional

from otel_profiling._env import env_list, env_str, hidden
from otel_profiling.environment_variables import (
    OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE,
    OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS,
    OTEL_EXPORTER_FSSPEC_PROFILES_URL,
    OTEL_PROFILES_EXPORTER,
)
from otel_profiling.exporters.backends import default_options, normalize_scheme
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.exporters.console import ConsoleProfileExporter
from otel_profiling.exporters.storage import FsspecProfileExporter
from otel_profiling.naming import DEFAULT_KEY_TEMPLATE, validate_key_template
from otel_profiling.redact import redact_url

_logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "otel_profiling_exporter"
DEFAULT_URL = "file://./profiles"


def _shown_url(url: str) -> str:
    return repr(redact_url(url))


def storage_options_from_env() -> Dict[str, Any]:
    """``OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS``: a JSON object of fsspec options.

    The value may hold credentials, so a bad value is reported by its position
    only, never echoed.
    """
    name = OTEL_EXPORTER_FSSPEC_PROFILES_STORAGE_OPTIONS
    raw = env_str(name, show=hidden)
    if raw is None:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        _logger.warning(
            "Invalid value for environment variable %s: not JSON (%s at line %d column %d); "
            "no storage options used.",
            name,
            exc.msg,
            exc.lineno,
            exc.colno,
        )
        return {}
    if not isinstance(options, dict):
        _logger.warning(
            "Invalid value for environment variable %s: expected a JSON object such as "
            '{"endpoint_url": "http://127.0.0.1:9000"}, got a %s; no storage options used.',
            name,
            type(options).__name__,
        )
        return {}
    return options


def key_template_from_env() -> str:
    """The object name template from ``OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE``."""
    name = OTEL_EXPORTER_FSSPEC_PROFILES_KEY_TEMPLATE
    template = env_str(name, DEFAULT_KEY_TEMPLATE) or DEFAULT_KEY_TEMPLATE
    try:
        validate_key_template(template)
    except ValueError as exc:
        _logger.warning(
            "Invalid value for environment variable %s: %s Using the default %r.",
            name,
            exc,
            DEFAULT_KEY_TEMPLATE,
        )
        return DEFAULT_KEY_TEMPLATE
    return template


def fsspec_exporter_from_env() -> FsspecProfileExporter:
    """The ``fsspec`` exporter from ``OTEL_EXPORTER_FSSPEC_PROFILES_*``.

    For ``s3://`` URLs botocore's checksums default to ``when_required`` (as
    ``S3Exporter`` does), unless the storage options set them.
    """
    url = env_str(OTEL_EXPORTER_FSSPEC_PROFILES_URL, DEFAULT_URL, show=_shown_url) or DEFAULT_URL
    options = default_options(normalize_scheme(url)[1], storage_options_from_env())
    try:
        return FsspecProfileExporter(url, options, key_template=key_template_from_env())
    except (ImportError, ValueError) as exc:
        where = f"{OTEL_EXPORTER_FSSPEC_PROFILES_URL}={redact_url(url)!r}"
        raise ValueError(f"{where}: {exc}") from None


def otlp_exporter_from_env() -> ProfileExporter:
    """The ``otlp`` exporter (extra ``otlp``), from ``OTEL_EXPORTER_OTLP_PROFILES_*``."""
    from otel_profiling.exporters.otlp import otlp_exporter_from_env as build

    return build()


BUILTIN_EXPORTERS: Dict[str, Optional[Callable[[], ProfileExporter]]] = {
    "fsspec": fsspec_exporter_from_env,
    "otlp": otlp_exporter_from_env,
    "console": ConsoleProfileExporter,
    "none": None,
}


def plugin_entry_points() -> Dict[str, importlib.metadata.EntryPoint]:
    """Installed exporters in the ``otel_profiling_exporter`` group, by name (first wins)."""
    plugins: Dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        plugins.setdefault(entry_point.name, entry_point)
    return plugins


def known_exporter_names() -> List[str]:
    return sorted(set(BUILTIN_EXPORTERS) | set(plugin_entry_points()))


def exporter_name(name: str) -> str:
    """The exporter ``name`` stands for: the one home of the case rule.

    Names are matched in any case, as the other values of ``OTEL_*`` variables
    (``Console``, ``FSSPEC``): a built-in one in lower case; a plugin's as it
    is registered, its exact name first; an unknown name as given.
    """
    if name.lower() in BUILTIN_EXPORTERS:
        return name.lower()
    plugins = plugin_entry_points()
    if name in plugins:
        return name
    return next((key for key in plugins if key.lower() == name.lower()), name)


def load_exporter(name: str) -> Optional[ProfileExporter]:
    """The exporter called ``name`` in any case (``None`` for ``none``; see ``exporter_name``).

    Raises ``ValueError`` if unknown.
    """
    name = exporter_name(name)
    if name in BUILTIN_EXPORTERS:
        factory = BUILTIN_EXPORTERS[name]
        return factory() if factory is not None else None
    entry_point = plugin_entry_points().get(name)
    if entry_point is None:
        raise ValueError(
            f"unknown exporter {name!r}; known: {', '.join(known_exporter_names())} "
            f"(plugins register in the entry-point group {ENTRY_POINT_GROUP!r})"
        )
    factory = entry_point.load()
    exporter = factory()
    if not callable(getattr(exporter, "export", None)):
        raise TypeError(
            f"entry point {name!r} ({entry_point.value}) returned {type(exporter).__name__}, "
            "not a ProfileExporter"
        )
    return exporter


def exporters_from_env() -> List[ProfileExporter]:
    """One exporter per name in ``OTEL_PROFILES_EXPORTER`` (comma list, default ``fsspec``)."""
    exporters: List[ProfileExporter] = []
    names = env_list(OTEL_PROFILES_EXPORTER, ["fsspec"])
    for name in dict.fromkeys(exporter_name(name) for name in names):  # one per exporter
        try:
            exporter = load_exporter(name)
        except Exception as exc:  # noqa: BLE001 - reported once; the others still run
            _logger.error(
                "Exporter %r named in environment variable %s not loaded (%s); it is left out.",
                name,
                OTEL_PROFILES_EXPORTER,
                exc,
            )
            continue
        if exporter is not None:
            _logger.debug("Profiles exporter %r: %r", name, exporter)
            exporters.append(exporter)
    return exporters
