"""The access service as a real process on the real broker: it consumes the indexer's
`indexed` and the harmoniser's `harmonised` events into its projections, and emits access-requested, access-decided and the
audit ledger's head (audit-head) on its timer."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.access.objects import objects_of
from services.access.store import AccessStore
from shared.auth import token_hash
from shared.bus import publish
from shared.envelope import normalise_headers
from shared.events import (
    AccessDecided,
    AccessRequested,
    AuditHead,
    Indexed,
    SampleStatus,
    Submission,
)
from shared.topics import topic_name
from tests.ids import issued_id
from tests.support import Process, free_port, genomhub, records, wait_for
from tests.unit.indexer.factories import harmonised

TOKENS = {
    "svc-ouh-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "svc-rh-steward": {"holder": "hovedstaden", "roles": ["data-steward"]},
}


def call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def indexed(run_id: str) -> Indexed:
    return Indexed(
        submission=Submission(
            submission_id=issued_id(f"access-{run_id}"),
            region="hovedstaden",
            department="Rigshospitalet",
            sample_id=f"RH-{run_id}",
            patient_id=f"NP-{run_id}",
            analysis_type="WGS",
            platform="ILLUMINA",
            received_at=datetime(2026, 2, 3, 10, tzinfo=UTC),
        ),
        status=SampleStatus.HARMONISED,
        accepted=True,
        genome_equivalents=Decimal("1.0"),
        files=4,
    )


def test_access_consumes_indexed_and_emits_its_events(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    asyncio.run(
        publish([(indexed(run_id), f"{run_id}-indexed")], "/genomhub/test-indexer", principal="indexer")
    )
    files = harmonised(indexed(run_id).submission)
    asyncio.run(
        publish([(files, f"{run_id}-harmonised")], "/genomhub/test-harmoniser", principal="harmoniser")
    )
    cram = next(o for o in objects_of(files) if o.name.endswith(".cram"))
    port = free_port()
    env = {
        "GENOMHUB_ACCESS_DATABASE_URL": f"sqlite:///{tmp_path / 'access.sqlite'}",
        "GENOMHUB_ACCESS_PORT": str(port),
        "GENOMHUB_ACCESS_AUDIT_HEAD_INTERVAL": "1",
        "GENOMHUB_TOKENS": json.dumps({token_hash(t): e for t, e in TOKENS.items()}),
    }
    service = Process(genomhub("run", "access"), tmp_path / "access.log", env)
    service.start()
    try:
        service.wait_http(port, "/readyz", timeout=90)
        ask = f"/v1/discovery?patient=NP-{run_id}&case_reference=OUH-{run_id}"

        def known() -> bool:
            status, body = call(port, "GET", ask, "svc-ouh-clinician")
            return status == 200 and bool(body["exists"])

        wait_for(known, timeout=90, what="the access service to project the indexed sample")
        status, made = call(
            port,
            "POST",
            "/v1/access/requests",
            "svc-ouh-clinician",
            {
                "owner": "hovedstaden",
                "patient": f"NP-{run_id}",
                "department": "OUH Klinisk Genetik",
                "wants": ["harmonised-cram"],
                "purpose": "patient-treatment",
                "case_reference": f"OUH-{run_id}",
                "urgency": "routine",
            },
        )
        assert status == 201, (made, service.tail())
        request_id = made["request"]["request_id"]
        status, decided = call(
            port, "POST", f"/v1/access/requests/{request_id}/decision", "svc-rh-steward", {"grant": True}
        )
        assert status == 201, decided
        status, drs = call(port, "GET", f"/ga4gh/drs/v1/objects/{cram.object_id}", "svc-ouh-clinician")
        assert status == 200 and drs["size"] == cram.size, drs

        # No call after the decision: the ledger's head is final, and the timer publishes it.
        store = AccessStore(env["GENOMHUB_ACCESS_DATABASE_URL"], migrate=False)
        try:
            entries, head = store.head()
        finally:
            store.dispose()

        def head_published() -> list[Any]:
            return [
                r
                for r in records(kafka_bootstrap, topic_name(AuditHead))
                if json.loads(r.value)["head_sha256"] == head
            ]

        # Published every interval, changed or not (an unchanged head is the same event id).
        published = wait_for(head_published, timeout=60, what="the audit head")[-1]
    finally:
        service.stop()

    key = request_id.encode()
    (requested,) = [r for r in records(kafka_bootstrap, topic_name(AccessRequested)) if r.key == key]
    data = AccessRequested.model_validate_json(requested.value)
    assert [s.sample_id for s in data.samples] == [f"RH-{run_id}"]
    assert dict(normalise_headers(requested.headers))["ce_source"] == b"/genomhub/access"
    (decision,) = [r for r in records(kafka_bootstrap, topic_name(AccessDecided)) if r.key == key]
    assert AccessDecided.model_validate_json(decision.value).granted
    # the discovery questions (asked until the sample was known), the request and the decision
    assert AuditHead.model_validate_json(published.value).entries == entries >= 3
