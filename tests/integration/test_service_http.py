"""Every service's probes and metrics, on a real service process against the real broker."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from shared.bus import publish
from shared.events import new_submission_id
from tests.integration.test_bus import make_event, probe
from tests.support import wait_for


def get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read().decode()


def test_health_readiness_and_metrics(kafka_bootstrap: str, tmp_path: Path) -> None:
    proc, effects, port = probe(tmp_path, "probe-http")
    sid = new_submission_id()
    asyncio.run(publish([(make_event(sid), f"id-{sid}")], "/genomhub/test", principal="receiver"))
    proc.start()
    try:
        proc.wait_http(port)
        wait_for(lambda: effects.exists() and sid in effects.read_text(), what="the event handled")
        assert get(port, "/healthz") == (200, '{"status": "alive"}')
        status, body = get(port, "/readyz")
        assert status == 200 and '"ready"' in body

        def scraped() -> str | None:
            text = get(port, "/metrics")[1]
            return text if "genomhub_consumer_lag_records{" in text else None

        metrics = wait_for(scraped, timeout=30, what="a lag gauge (the group's first commit)")
        assert 'genomhub_events_processed_total{event="file-received",service="probe-http"}' in metrics
        assert "genomhub_processing_seconds_bucket" in metrics
        assert 'genomhub_consumer_lag_records{partition="' in metrics
    finally:
        proc.stop()
