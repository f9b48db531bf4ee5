"""The resource profiles carry when none is given."""

from __future__ import annotations

import socket
from typing import Optional

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource


def default_resource() -> Resource:
    """``Resource.create()`` (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) on ``host.name``.

    ``host.name`` tells containers apart when a fleet writes to one bucket; an
    explicit ``host.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` wins.
    """
    return Resource({"host.name": socket.gethostname()}).merge(Resource.create())


def resource_from_env(tracer_provider: Optional[object] = None) -> Resource:
    """The tracer provider's resource when an SDK one is set, so profiles and traces agree.

    Otherwise ``Resource.create()`` (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``) over a detected ``host.name``.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    resource = getattr(provider, "resource", None)
    if isinstance(resource, Resource):
        return resource
    return default_resource()


def renewed_after_fork(resource: Resource) -> Resource:
    """The resource of a forked child: its own ``service.instance.id``.

    Recent SDKs give each process a random ``service.instance.id`` and their
    providers renew it in a forked child (one id per pid, shared by every
    provider of the process); profiles follow, so a gunicorn worker's profiles
    and traces carry the same id, not the master's. A resource without the
    attribute, or an SDK without that detector, is left as it is.
    """
    if "service.instance.id" not in resource.attributes:
        return resource
    try:
        from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector
    except ImportError:
        return resource
    return resource.merge(ServiceInstanceIdResourceDetector().detect())
