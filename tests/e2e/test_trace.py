"""One submission through all five services, and one Jaeger trace that follows it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from services.demo import DemoTokens, report_sample, simulate_sample, stack_env, wait_until_accrued
from shared.events import Region
from tests.e2e.conftest import stack_settings
from tools.background import free_port
from tools.jaeger.server import ancestry, fetch_trace, spans_by_service
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
