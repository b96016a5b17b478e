"""A refund leads back to the submissions it pays, in a real Jaeger: billing consumes indexed
events from the real broker, each in its submission's trace; the month close's
refund-calculated event carries a trace of its own whose root span links to each accrual's
span, and that span is in its submission's trace."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.billing.store import BillingStore
from shared.config import StateSettings
from shared.envelope import encode, normalise_headers
from shared.events import Indexed, RefundCalculated, Region
from shared.topics import emitter_of, topic_name
from tests.integration.test_hostile_records import GroupPosition
from tests.support import ROOT, Process, free_port, genomhub, kafka, records, wait_for
from tests.unit.billing.billing_factories import indexed
from tools.jaeger.server import JaegerState, LocalJaeger, fetch_trace, spans_by_service

MONTH = "2026-11"
"""A month of this test's own, after every other test's: a close of theirs is never held up
by these accruals when their billing reads the shared topic from its start."""
NOVEMBER = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def jaeger(tmp_path: Path) -> Any:
    local = LocalJaeger(tmp_path / "jaeger-home", StateSettings().cache)
    if not local.built():
        local.build()
    state = local.start(free_port(), free_port(), free_port())
    try:
        yield state
    finally:
        local.stop()


async def _send_in_traces(bootstrap: str, events: list[tuple[Indexed, str, str]]) -> None:
    """Each indexed event on the real topic with its submission's trace context, as the
    indexer sends it."""
    producer = kafka(emitter_of(Indexed), bootstrap).producer(acks="all")
    await producer.start()
    try:
        for event, event_id, traceparent in events:
            headers, value = encode(event, event_id=event_id, source="/genomhub/indexer")
            headers.append(("traceparent", traceparent.encode()))
            await producer.send_and_wait(
                topic_name(Indexed), value, key=event.key().encode(), headers=headers
            )
    finally:
        await producer.stop()


def _spans(state: JaegerState, trace_id: str, *, until: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = fetch_trace(state, trace_id)
        spans = [span for _, span in spans_by_service(found)] if found else []
        if until(spans):
            return spans
        time.sleep(1)
    return spans


def test_a_refund_s_trace_links_to_the_submissions_it_pays(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest, jaeger: JaegerState
) -> None:
    run_id = uuid.uuid4().hex[:8]
    submissions = {f"{uuid.uuid4().hex}": f"{uuid.uuid4().hex[:16]}" for _ in range(3)}
    events = [
        (
            indexed(f"{run_id}-T{i}", region=list(Region)[i], received_at=NOVEMBER),
            f"{run_id}-t{i}",
            f"00-{trace_id}-{span_id}-01",
        )
        for i, (trace_id, span_id) in enumerate(submissions.items())
    ]
    position = GroupPosition(kafka_bootstrap, "billing")
    request.addfinalizer(position.restore)
    position.skip_to_end()  # earlier suites' months would have to close first
    asyncio.run(_send_in_traces(kafka_bootstrap, events))
    url = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    port = free_port()
    env = {
        "GENOMHUB_BILLING_DATABASE_URL": url,
        "GENOMHUB_BILLING_PORT": str(port),
        "GENOMHUB_BILLING_OPENING_BALANCE_DKK": "1000000",
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    service = Process(genomhub("run", "billing"), tmp_path / "billing.log", env).start()
    try:
        service.wait_http(port, "/readyz", timeout=90)

        def accrued() -> bool:
            store = BillingStore(url, migrate=False)
            try:
                return {b.accrual.sample_id for b in store.billed(MONTH)} >= {
                    e.submission.sample_id for e, _, _ in events
                }
            finally:
                store.dispose()

        wait_for(accrued, timeout=90, what="the accruals")
        closed = subprocess.run(
            genomhub("billing", "close", MONTH, "--by", "finance"),
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=ROOT,
            timeout=120,
        )
        assert closed.returncode == 0, closed.stdout + closed.stderr
    finally:
        service.stop()

    refunds = [
        r
        for r in records(kafka_bootstrap, topic_name(RefundCalculated))
        if dict(normalise_headers(r.headers)).get("ce_subject") == MONTH.encode()
    ]
    traceparent = dict(normalise_headers(refunds[-1].headers))["traceparent"].decode()
    refund_trace = traceparent.split("-")[1]
    assert refund_trace not in submissions, "the close is a trace of its own"

    def linked(spans: list[dict[str, Any]]) -> bool:
        return {link["traceId"] for s in spans for link in s.get("links", [])} >= set(submissions)

    spans = _spans(jaeger, refund_trace, until=linked)
    (root,) = [s for s in spans if not s.get("parentSpanId")]
    assert root["name"] == f"billing close {MONTH}"
    links = {link["traceId"]: link["spanId"] for s in spans for link in s.get("links", [])}
    assert set(submissions) <= set(links), f"the close links to {sorted(links)}"
    for trace_id, upstream in submissions.items():
        # The link leads to billing's span in the submission's trace, under the indexer's.
        submission_spans = _spans(
            jaeger, trace_id, until=lambda s, t=trace_id: any(x["spanId"] == links[t] for x in s)
        )
        (accrual,) = [s for s in submission_spans if s["spanId"] == links[trace_id]]
        assert accrual["traceId"] == trace_id and accrual["parentSpanId"] == upstream
