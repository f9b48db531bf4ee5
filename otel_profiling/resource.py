"""The resource profiles carry when none is given."""

from __future__ import annotations

import socket

from opentelemetry.sdk.resources import Resource


def default_resource() -> Resource:
    """``Resource.create()`` (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) on ``host.name``.

    ``host.name`` tells containers apart when a fleet writes to one bucket; an
    explicit ``host.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` wins.
    """
    return Resource({"host.name": socket.gethostname()}).merge(Resource.create())
