"""The billing service: indexed events in, accruals stored; statements out over HTTP; and a
timer that closes months automatically (when configured) and sends any statement event that
a close from the command line could not get acknowledged by the broker.

Only wiring lives here: the rules are in ``accrual``, ``months``, ``refund`` and ``store``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from opentelemetry import trace

from services.billing.accrual import accrual_of
from services.billing.api import install
from services.billing.refund import Statement
from services.billing.store import AUTO_CLOSE_BY, BillingStore, CloseRefused, open_store
from shared import telemetry
from shared.auth import Tokens
from shared.bus import Consumed, Service
from shared.config import BillingSettings
from shared.events import Indexed
from shared.telemetry import get_logger

TIMER_INTERVAL_S = 60.0
"""How often the service looks for months due to close and statements not yet emitted."""
EMIT_GRACE = timedelta(minutes=5)
"""A statement closed from the command line is left this long to its own publish."""
log = get_logger(__name__)


@contextmanager
def close_trace(tracer: trace.Tracer, store: BillingStore, statement: Statement) -> Iterator[trace.Span]:
    """The trace of a month close's statement, which its refund-calculated event carries: a
    trace of its own (it pays many submissions, each with its own trace), linked to the
    trace context of every accrual it pays, so Jaeger leads from the refund back to them."""
    with telemetry.linked_root(
        tracer,
        f"billing close {statement.month}",
        store.trace_parents(statement.month),
        {"genomhub.month": statement.month, "genomhub.statement_id": statement.statement_id},
    ) as span:
        yield span


def build() -> Service:
    settings = BillingSettings()
    service = Service("billing", settings)
    store = open_store(settings.database_url, settings.opening_balance_dkk)
    service.readiness.append(store.readiness())

    async def on_indexed(batch: Sequence[Consumed[Indexed]]) -> None:
        # A poll batch in one transaction: a national replay commits once per batch.
        accruals = []
        for consumed in batch:
            with consumed.current():  # the traceparent kept is this record's, in its trace
                accrual = accrual_of(
                    consumed.envelope.data, consumed.envelope.id, telemetry.current_traceparent()
                )
            if accrual is None:
                sub = consumed.envelope.data.submission
                log.info(
                    "not billed: sample did not pass QC", sample_id=sub.sample_id, region=sub.region.value
                )
            else:
                accruals.append(accrual)
        outcomes = await asyncio.to_thread(store.accrue_all, accruals)
        for accrual, outcome in zip(accruals, outcomes, strict=True):
            log.info(
                "accrual",
                outcome=outcome.value,
                sample_id=accrual.sample_id,
                region=accrual.region.value,
                received_month=accrual.received_month,
            )

    service.on_batch(Indexed, on_indexed)

    async def emit(statement: Statement) -> None:
        with close_trace(service.tracer, store, statement):
            await service.emit(statement.event(), event_id=statement.event_id)
        await asyncio.to_thread(store.mark_emitted, statement, datetime.now(UTC))
        log.info("refund-calculated emitted", month=statement.month, event_id=statement.event_id)

    async def close_and_emit() -> None:
        try:
            await close_due_and_emit_pending()
        except Exception:  # a timer that raises stops the whole service: log, retry next tick
            log.exception("closing or emitting statements failed; trying again at the next tick")

    async def close_due_and_emit_pending() -> None:
        now = datetime.now(UTC)
        if settings.auto_close_days is not None:
            try:
                closed = await asyncio.to_thread(
                    store.close_due,
                    days=settings.auto_close_days,
                    standard_rate_dkk=settings.standard_rate_dkk,
                    now=now,
                )
            except CloseRefused as exc:
                log.warning("automatic close refused", reason=str(exc))
            else:
                for statement in closed:
                    log.info("month closed automatically", month=statement.month, rate_dkk=statement.rate_dkk)
        for statement in await asyncio.to_thread(store.unemitted):
            if statement.closed_by == AUTO_CLOSE_BY or statement.closed_at <= now - EMIT_GRACE:
                await emit(statement)

    service.timer(TIMER_INTERVAL_S)(close_and_emit)

    install(service.web, store, Tokens(settings.access.tokens))
    return service
