"""OpenTelemetry spans for inference requests, after the GenAI semantic conventions.

One CLIENT span per request, named `{operation} {model}` (e.g. `chat llama-8b`), with
`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.request.max_tokens`, `gen_ai.response.model`, `gen_ai.response.id`,
`gen_ai.usage.input_tokens` / `output_tokens`, `server.address`, `error.type`, and teeroute's
own `teeroute.pool`, `teeroute.endpoint`, `teeroute.cost`. Prompts, messages and outputs are
never recorded (the conventions make content opt-in; we never opt in).

With tracing off no span is created at all, so the request path pays nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

log = logging.getLogger(__name__)
PROVIDER = "teeroute"


def make_tracer(
    mode: str, ratio: float, exporter: SpanExporter | None = None
) -> trace.Tracer | None:
    """A tracer for `mode` (off, console, otlp), or None when off. Tests pass an exporter."""
    given = exporter is not None
    if exporter is None:
        if mode == "off":
            return None
        exporter = _exporter(mode)
        if exporter is None:
            return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": "teeroute-gateway"}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    # an exporter handed in (tests) gets each span at once; real ones in batches, off the path
    processor = SimpleSpanProcessor(exporter) if given else BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider.get_tracer("teeroute_gateway")


def _exporter(mode: str) -> SpanExporter | None:
    if mode == "console":
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError:
        log.error(
            "tracing=otlp needs the opentelemetry-exporter-otlp-proto-http package; tracing is off"
        )
        return None
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def start(tracer: trace.Tracer | None, operation: str, model: str, max_tokens: int | None) -> Any:
    if tracer is None:
        return None
    span = tracer.start_span(f"{operation} {model}", kind=trace.SpanKind.CLIENT)
    span.set_attribute("gen_ai.operation.name", operation)
    span.set_attribute("gen_ai.provider.name", PROVIDER)
    span.set_attribute("gen_ai.request.model", model)
    if max_tokens is not None:
        span.set_attribute("gen_ai.request.max_tokens", max_tokens)
    return span


def finish(span: Any, attributes: dict[str, Any], error: str | None = None) -> None:
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()
