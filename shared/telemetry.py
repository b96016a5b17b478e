"""Traces and logs: one trace per submission, and JSON log lines that name it.

Spans are exported over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the
exporter reads the standard OpenTelemetry variables itself); otherwise nothing leaves the
process. Log lines carry the service, the bound submission and event ids, and the current
trace and span ids, so a line in any service can be found from its Jaeger trace and back.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.identifiers import contains_cpr

_configured: str | None = None

REDACTED = "[redacted]"
CPR_REDACTED = "[redacted: looks like a CPR number]"
SECRET_KEYS = frozenset(
    {"authorization", "cookie", "set-cookie", "token", "password", "secret", "proxy-authorization"}
)
"""Log fields whose value is a secret whatever it looks like."""
_CREDENTIALS = re.compile(
    r"(?i)\b(bearer|basic|digest)(\s+|%20|\\x20)[^\s\"',;]+"
    r"|\b((?:proxy-)?authorization|(?:set-)?cookie)(\s*[:=]\s*|'\s*:\s*'|\"\s*:\s*\")[^\r\n\"']*"
)


@functools.lru_cache(maxsize=4096)
def _redacted_value(text: str) -> str:
    """:func:`redact_text` of a short value of a log line, remembered: most of a line's
    values (service, level, event, region, outcome, month) recur on every line."""
    return redact_text(text)


SHORT_VALUE = 200
"""The longest log value whose redaction is remembered (ids, names, months; not tracebacks)."""


_LOG_NUMBERS = re.compile(
    r"(?<![0-9])[0-9]{4}-[0-9]{2}-[0-9]{2}"  # an ISO 8601 date, with its time if it has one
    r"(?:[T ][0-2][0-9]:[0-5][0-9](?::[0-6][0-9](?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
    r"(?![0-9])"
    r"|(?<![0-9:])[0-2][0-9]:[0-5][0-9]:[0-6][0-9](?:[.,][0-9]+)?(?![0-9:])"  # a clock time
    r"|(?<![0-9A-Za-z])(?=[0-9]*[a-f])(?:[0-9a-f]{16}|[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})(?![0-9A-Za-z])"
    r"|(?<![0-9.,:/_-])[0-9]{1,5}\.[0-9]+(?:[eE][+-]?[0-9]+)?(?![.,:/_-]?[0-9])"  # a decimal number
)
"""What in a log line is a number of the log's own, never a CPR number, though its digits
may read as one: ISO timestamps (structlog's own ``...T21:24:05.123456Z`` holds
``2405123456``, a valid date, on about one line in ten), clock times, trace, span and
digest ids in hex (with a letter in them: an all-digit run is never let through as an id)
and decimal numbers with a short integer part (``0.1203851234`` seconds). Plain integers
stay checked whatever label they carry: a size or count may be a region's value, and a
region's value may be a CPR number; so does a decimal with six digits before its point
(DDMMYY.SSSS is how some type a CPR number)."""


def looks_like_cpr_in_log(line: str) -> bool:
    """The CPR guard (:func:`shared.identifiers.contains_cpr`) on a log line, its timestamps
    and numbers (:data:`_LOG_NUMBERS`) left out: each becomes a letter, which ends a digit
    cluster, so the digits either side of it do not join into one."""
    return contains_cpr(line) and contains_cpr(_LOG_NUMBERS.sub("x", line))


def redact_text(text: str) -> str:
    """``text`` without credentials (bearer and basic tokens, Authorization and Cookie
    header values) and without any line that holds something CPR-like.

    A line, not the digits alone, goes for a CPR: the guard decides whether a value looks
    like a CPR number, not where its separators end, and a log line that lost its CPR can
    still be read around it (a traceback keeps its other lines). A log's own numbers
    (timestamps, durations, offsets) are not CPR numbers: :func:`looks_like_cpr_in_log`.
    """
    text = _CREDENTIALS.sub(lambda m: f"{m.group(1) or m.group(3)}{m.group(2) or m.group(4)}{REDACTED}", text)
    if looks_like_cpr_in_log(text):
        text = "\n".join(CPR_REDACTED if looks_like_cpr_in_log(line) else line for line in text.split("\n"))
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with every string in it redacted (:func:`redact_text`); secret keys blanked."""
    if key is not None and key.lower() in SECRET_KEYS:
        return REDACTED
    if isinstance(value, str):
        return _redacted_value(value) if len(value) <= SHORT_VALUE else redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", errors="replace"))
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return value


def _redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The structlog step every line passes last before rendering: see :func:`redact`."""
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], key)
    return event_dict


_base_record_factory = logging.getLogRecordFactory()


def _redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every stdlib log record (aiohttp, aiokafka, alembic...), redacted as it is made.

    A record factory rather than a handler or formatter: a library may replace the root
    handlers or add any handler it likes, but every record, whoever formats it, is made
    here. The message is rendered and redacted, and so is the traceback, which is then kept
    as the record's ``exc_text`` for every formatter.
    """
    record = _base_record_factory(*args, **kwargs)
    try:
        record.msg = redact_text(record.getMessage())
    except Exception:  # a bad format string: keep what can be shown, redacted
        record.msg = redact_text(str(record.msg))
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


def redact_stdlib_logging() -> None:
    """Install :func:`_redacted_record`; idempotent."""
    if logging.getLogRecordFactory() is not _redacted_record:
        logging.setLogRecordFactory(_redacted_record)


def _add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on the process's own standard error (file descriptor 2).

    ``sys.__stderr__`` rather than ``sys.stderr``: a test's capture replaces ``sys.stderr``,
    and so may a library.
    """
    return structlog.PrintLogger(sys.__stderr__ or sys.stderr)


PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_trace_ids,
    structlog.processors.format_exc_info,
    _redact_event,
    structlog.processors.JSONRenderer(sort_keys=True),
]
"""The one pipeline of every log line; redaction is the last step before rendering."""


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

    redact_stdlib_logging()
    # The same standard error as structlog's lines (see _stderr_logger): a handler bound to a
    # replaced sys.stderr (a test's CliRunner) would write into a closed stream later.
    logging.basicConfig(stream=sys.__stderr__ or sys.stderr, level=level, format="%(message)s", force=True)
    structlog.configure(
        processors=PROCESSORS,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
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


LINKS_PER_SPAN = 128
"""The OpenTelemetry SDK keeps at most 128 links on a span (its default ``max_links``)."""


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to keep with what it caused: a later
    trace can then link back to it (:func:`linked_root`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def links_to(traceparents: Iterable[str]) -> list[trace.Link]:
    """A span link to each valid ``traceparent``; an unreadable one is left out."""
    links = []
    for parent in traceparents:
        context = trace.get_current_span(propagate.extract({"traceparent": parent})).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context))
    return links


@contextmanager
def linked_root(
    tracer_: trace.Tracer, name: str, traceparents: Sequence[str], attributes: Mapping[str, str] | None = None
) -> Iterator[trace.Span]:
    """A new trace (a root span, whatever is current) linked to each of ``traceparents``:
    an act that gathers many earlier ones (a month close paying its accruals) is its own
    trace, and leads back to each of theirs.

    The root holds the first :data:`LINKS_PER_SPAN` links, and one child span each further
    batch, so that no link is dropped by the SDK's limit.
    """
    links = links_to(traceparents)
    head, rest = links[:LINKS_PER_SPAN], links[LINKS_PER_SPAN:]
    with tracer_.start_as_current_span(
        name, context=Context(), links=head, attributes={**(attributes or {}), "genomhub.links": len(links)}
    ) as root:
        for start in range(0, len(rest), LINKS_PER_SPAN):
            batch = rest[start : start + LINKS_PER_SPAN]
            tracer_.start_span(f"{name} (links {LINKS_PER_SPAN + start + 1}-)", links=batch).end()
        yield root
