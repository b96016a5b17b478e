"""One submission through all five services, and one Jaeger trace that follows it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.bus import read_records
from shared.envelope import normalise_headers
from shared.events import RefundCalculated, Region, month_of
from shared.topics import topic_name
from tests.e2e.conftest import stack_settings
from tools.background import free_port
from tools.jaeger.server import ancestry, fetch_trace, spans_by_service
from tools.stack.demo import (
    DemoTokens,
    genomhub_command,
    report_sample,
    simulate_sample,
    stack_env,
    wait_until_accrued,
)
from tools.stack.supervisor import LocalStack

CHAIN = ["billing", "indexer", "harmoniser", "validator", "receiver"]


def test_one_trace_holds_all_five_services_in_causal_order(tmp_path: Path, jaeger_binary: Path) -> None:
    settings = stack_settings(tmp_path)
    tokens = DemoTokens.make()
    ports = (free_port(), free_port(), free_port())
    with LocalStack(settings, env=stack_env(tokens), jaeger_ports=ports, say=print) as stack:
        stack.wait_ready()
        assert stack.jaeger_state is not None
        reads = simulate_sample(settings.reference(), tmp_path / "reads", "E2E-S1", seed=7, coverage=2)
        receiver = f"http://127.0.0.1:{stack.supervisor.services['receiver'].port}"  # type: ignore[union-attr]
        region = Region.NORDJYLLAND
        sid = asyncio.run(
            report_sample(receiver, tokens.by_holder[region.value], region, "E2E-S1", "E2E-P1", reads)
        )
        outcome = wait_until_accrued(stack, [sid], timeout=300)[sid]
        assert outcome.accepted and outcome.status == "harmonised"
        assert len(outcome.event_ids) == 1
        assert outcome.trace_id is not None

        refund_links = _close_and_follow_the_refund(stack, settings.state_dir, tokens)

        deadline = time.monotonic() + 60
        chains: list[list[str]] = []
        spans: list[tuple[str, dict[str, Any]]] = []
        while time.monotonic() < deadline:
            trace = fetch_trace(stack.jaeger_state, outcome.trace_id)
            spans = spans_by_service(trace) if trace else []
            chains = [
                ancestry(spans, span["spanId"]) for service, span in spans if service == "genomhub-billing"
            ]
            if CHAIN in chains:
                break
            time.sleep(1)
    services = {service for service, _ in spans}
    assert {f"genomhub-{s}" for s in CHAIN} <= services, services
    assert {span["traceId"] for _, span in spans} == {outcome.trace_id}
    assert CHAIN in chains, f"billing's spans descend from {chains}, not from the whole chain"
    # The month close is a trace of its own, and its link leads to billing's span in the
    # submission's trace, the end of the chain above.
    assert refund_links, "the refund's trace links to nothing"
    (billing_span,) = [
        s for service, s in spans if service == "genomhub-billing" and ancestry(spans, s["spanId"]) == CHAIN
    ]
    assert (outcome.trace_id, billing_span["spanId"]) in refund_links


def _close_and_follow_the_refund(stack: LocalStack, home: Path, tokens: DemoTokens) -> set[tuple[str, str]]:
    """Close the month from the command line, as finance does, exporting to the stack's
    Jaeger; the (trace, span) links of the refund's trace once Jaeger has its root span."""
    assert stack.jaeger_state is not None
    env = {
        **stack_env(tokens),
        "GENOMHUB_HOME": str(home),
        "GENOMHUB_KAFKA_BOOTSTRAP": stack.bootstrap,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.jaeger_state.otlp_endpoint,
    }
    month = month_of(datetime.now(UTC))
    genomhub_command(["billing", "grant", "add", "1000", "--note", "e2e"], env)
    genomhub_command(["billing", "close", month, "--force", "--by", "e2e"], env)
    refund = [
        r
        for r in asyncio.run(read_records(stack.operator, [topic_name(RefundCalculated)]))
        if dict(normalise_headers(r.headers)).get("ce_subject") == month.encode()
    ]
    refund_trace = dict(normalise_headers(refund[-1].headers))["traceparent"].decode().split("-")[1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        trace = fetch_trace(stack.jaeger_state, refund_trace)
        roots = [s for _, s in (spans_by_service(trace) if trace else []) if not s.get("parentSpanId")]
        if roots:
            (root,) = roots
            assert root["name"] == f"billing close {month}" and root["traceId"] == refund_trace
            return {(link["traceId"], link["spanId"]) for link in root.get("links", [])}
        time.sleep(1)
    return set()
