"""A user's own OpenTelemetry configurator: an SDK tracer provider writing spans to a file.

Registered (by the test) in the ``opentelemetry_configurator`` entry-point group.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as handle:
            for span in spans:
                record = {
                    "name": span.name,
                    "trace_id": format_trace_id(span.context.trace_id),
                    "span_id": format_span_id(span.context.span_id),
                    "attributes": dict(span.attributes or {}),
                    "resource": dict(span.resource.attributes),
                }
                handle.write(json.dumps(record, default=list) + "\n")
        return SpanExportResult.SUCCESS


class SpanFileConfigurator:
    def configure(self, **kwargs: Any) -> None:
        resource = Resource.create({"configurator.id": "from-configurator"})
        provider = TracerProvider(resource=resource)
        exporter = JsonLinesSpanExporter(os.environ["SPANS_FILE"])
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
