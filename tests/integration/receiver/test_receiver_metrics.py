"""The receiver's /metrics on a real process: every series there from start-up, then counting what happened."""

from __future__ import annotations

import http.client
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from services.receiver.api import OPERATIONS
from shared.events import Region
from shared.metrics import RECEIVED_VIA, RequestOutcome
from tests.integration.receiver.conftest import TOKENS, Receiver, _receiver, metadata
from tests.support import wait_for
from tests.unit.shared.test_metrics import promtool

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(receiver: Receiver) -> tuple[str, Series]:
    text = requests.get(receiver.url + "/metrics", timeout=10).text
    values = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, values


def requests_of(series: Series, operation: str, outcome: RequestOutcome) -> float:
    key = (
        "genomhub_receiver_requests_total",
        frozenset({("operation", operation), ("outcome", outcome.value)}),
    )
    return series[key]


def received(series: Series, region: str, via: str) -> float:
    key = ("genomhub_receiver_received_bytes_total", frozenset({("region", region), ("via", via)}))
    return series[key]


def emitted(series: Series) -> float:
    key = ("genomhub_events_emitted_total", frozenset({("service", "receiver"), ("event", "file-received")}))
    return series[key]


@pytest.fixture
def fresh_receiver(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Receiver]:
    """A receiver of its own, so that its counters start from its start-up."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    receiver = _receiver(tmp_path, "receiver-metrics", (tmp_path / "store").as_uri(), inbox.as_uri(), {})
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def cut_off(receiver: Receiver, path: str, sent: bytes, announced: int) -> None:
    """A PUT announcing ``announced`` bytes that sends ``sent`` and goes away."""
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Authorization", f"Bearer {TOKENS['hovedstaden']}")
        conn.putheader("Content-Length", str(announced))
        conn.endheaders()
        conn.send(sent)
    finally:
        conn.close()


def test_every_series_is_there_from_start_up_and_counts(fresh_receiver: Receiver) -> None:
    text, before = scrape(fresh_receiver)
    for operation in OPERATIONS:
        for outcome in RequestOutcome:
            assert requests_of(before, operation, outcome) == 0
    for region in Region:
        for via in RECEIVED_VIA:
            assert received(before, region.value, via) == 0
        key = ("genomhub_receiver_uploads_in_flight", frozenset({("region", region.value)}))
        assert before[key] == 0
    assert emitted(before) == 0
    tool = promtool()
    if tool is not None:
        checked = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr

    sid_path = "/v1/submissions/" + uuid.uuid4().hex
    assert fresh_receiver.call("GET", sid_path, holder=None).status_code == 401
    assert fresh_receiver.call("GET", sid_path).status_code == 404
    created = fresh_receiver.call("POST", "/v1/submissions", json=metadata("S-METRICS", ["R1.fastq.gz"]))
    assert created.status_code == 201
    files = f"/v1/submissions/{created.json()['submission_id']}/files/R1.fastq.gz"
    data = os.urandom(3_000_000)
    cut_off(fresh_receiver, files, data[:1_000_000], len(data))
    wait_for(
        lambda: requests_of(scrape(fresh_receiver)[1], "put", RequestOutcome.INTERRUPTED) == 1,
        timeout=30,
        what="the cut-off upload counted as interrupted",
    )
    arrived = int(fresh_receiver.call("HEAD", files).headers["Upload-Offset"])
    rest = fresh_receiver.call("PUT", files, data=data[arrived:], headers={"Upload-Offset": str(arrived)})
    assert rest.status_code == 200, rest.text
    seal = fresh_receiver.call("POST", f"/v1/submissions/{created.json()['submission_id']}/seal")
    assert seal.status_code == 200, seal.text

    _, after = scrape(fresh_receiver)
    assert requests_of(after, "show", RequestOutcome.UNAUTHORISED) == 1
    assert requests_of(after, "show", RequestOutcome.REFUSED) == 1
    assert requests_of(after, "create", RequestOutcome.ACCEPTED) == 1
    assert requests_of(after, "put", RequestOutcome.INTERRUPTED) == 1
    assert requests_of(after, "put", RequestOutcome.ACCEPTED) == 1
    assert requests_of(after, "head", RequestOutcome.ACCEPTED) == 1
    assert requests_of(after, "seal", RequestOutcome.ACCEPTED) == 1
    assert sum(requests_of(after, "put", o) for o in RequestOutcome) == 2
    assert received(after, "hovedstaden", "upload") == len(data)
    assert received(after, "sjaelland", "upload") == 0
    assert emitted(after) == 1
    key = ("genomhub_receiver_uploads_in_flight", frozenset({("region", "hovedstaden")}))
    assert after[key] == 0
