"""Traces and logs: one trace per submission, and JSON log lines that name it.

Spans are exported over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the
exporter reads the standard OpenTelemetry variables itself); otherwise nothing leaves the
process. Log lines carry the service, the bound submission and event ids, and the current
trace and span ids, so a line in any service can be found from its Jaeger trace and back.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured: str | None = None


def _add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def setup(service: str, level: str = "INFO") -> None:
    """Configure tracing and JSON logging for a process that runs ``service``."""
    global _configured
    if _configured == service:
        return
    _configured = service
    provider = TracerProvider(resource=Resource.create({"service.name": f"genomhub-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)

    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s", force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def flush() -> None:
    """Export what is buffered: before a short-lived command exits."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject(headers: list[tuple[str, bytes]]) -> None:
    """Add the current trace context (``traceparent``, ``tracestate``) to record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers[:] = [(k, v) for k, v in headers if k not in carrier]
    headers.extend((k, v.encode()) for k, v in carrier.items())


def extract(headers: list[tuple[str, bytes]]) -> Context:
    """The upstream trace context carried by record headers."""
    carrier = {}
    for k, v in headers:
        if k in ("traceparent", "tracestate"):
            carrier[k] = v.decode(errors="replace")
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def bind(**values: str) -> Any:
    """Bind ids to every log line of the current task; pass the result to :func:`unbind`."""
    return structlog.contextvars.bind_contextvars(**values)


def unbind(tokens: Any) -> None:
    structlog.contextvars.reset_contextvars(**tokens)
