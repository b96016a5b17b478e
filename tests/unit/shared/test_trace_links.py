"""A trace that gathers many earlier ones (a month close paying its accruals) is a root span
of its own, linked to each of theirs, with no link dropped by the SDK's limit."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.telemetry import LINKS_PER_SPAN, current_traceparent, linked_root


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def traceparent(n: int) -> str:
    return f"00-{n + 1:032x}-{n + 1:016x}-01"


def test_the_close_is_a_root_linked_to_every_accrual_even_inside_another_trace() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("test")
    parents = [traceparent(n) for n in range(3)]
    with (
        tracer.start_as_current_span("handling something else"),
        linked_root(tracer, "close", parents) as root,
    ):
        carried = current_traceparent()
    (close,) = [s for s in exporter.get_finished_spans() if s.name == "close"]
    assert close.parent is None
    assert close.context.trace_id == root.get_span_context().trace_id
    assert carried is not None and carried.split("-")[1] == f"{close.context.trace_id:032x}"
    assert [(link.context.trace_id, link.context.span_id) for link in close.links] == [
        (n + 1, n + 1) for n in range(3)
    ]


def test_links_beyond_the_sdk_s_limit_are_kept_on_child_spans() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("test")
    count = 2 * LINKS_PER_SPAN + 5
    with linked_root(tracer, "close", [traceparent(n) for n in range(count)]):
        pass
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.parent is None]
    assert all(s.context.trace_id == root.context.trace_id for s in spans)
    linked = sorted(link.context.trace_id for s in spans for link in s.links)
    assert linked == [n + 1 for n in range(count)]
    assert root.attributes is not None and root.attributes["genomhub.links"] == count


def test_an_unreadable_trace_context_is_no_link() -> None:
    provider, exporter = recording()
    tracer = provider.get_tracer("test")
    with linked_root(tracer, "close", ["garbage", traceparent(7), "00-" + "0" * 32 + "-" + "0" * 16 + "-01"]):
        pass
    (close,) = exporter.get_finished_spans()
    assert [link.context.trace_id for link in close.links] == [8]
