"""The access API on SQLite with aiohttp's test client: roles, discovery, the request's
refusals, the owner's decision, revocation, expiry at use, the ledger and its verification.

Events go to a recording emitter here (the broker's part is tests/integration/access/
test_access_service.py): what matters is what the API hands over, and when.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from services.access.api import AccessApi, document
from services.access.commands import access, audit
from services.access.discovery import KnownSample
from services.access.objects import objects_of
from services.access.store import AccessStore, Audit
from shared.auth import Tokens, token_hash
from shared.encryption import read_public_key, write_key_pair
from shared.events import AccessDecided, AccessRequested, AccessRevoked, AnalysisType, Event, Region
from shared.http import make_web
from tests.support import assert_error_body, serve_app
from tests.unit.indexer.factories import harmonised, submission

TOKENS: dict[str, Any] = {
    "ouh-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "rh-steward": {"holder": "hovedstaden", "roles": ["data-steward"]},
    "ouh-steward": {"holder": "syddanmark", "roles": ["data-steward"]},
    "ngc-operator": {"holder": "ngc", "roles": ["operator", "data-steward"]},
    "rh-uploader": "hovedstaden",
}
RECEIVED = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    def __init__(
        self, client: TestClient[Any, Any], store: AccessStore, clock: Clock, sent: list[Event], url: str
    ):
        self.client, self.store, self.clock, self.sent, self.url = client, store, clock, sent, url

    async def call(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, await response.json()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite:///{tmp_path / 'access.sqlite'}"
    store = AccessStore(url)
    store.project(KnownSample(Region.HOVEDSTADEN, "RH-1", "NP-7", AnalysisType.WGS, RECEIVED, True), "e1")
    store.project(KnownSample(Region.HOVEDSTADEN, "RH-2", "NP-7", AnalysisType.WGS, RECEIVED, False), "e2")
    store.project(KnownSample(Region.SYDDANMARK, "OUH-1", "NP-7", AnalysisType.WES, RECEIVED, True), "e3")
    sent: list[Event] = []

    async def emit(event: Event, event_id: str) -> None:
        sent.append(event)

    clock = Clock()
    app = make_web([])
    AccessApi(store, emit, 14, clock).install(app, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    async with TestClient(TestServer(app)) as client:
        yield World(client, store, clock, sent, url)
    store.dispose()


REQUEST = {
    "owner": "hovedstaden",
    "patient": "NP-7",
    "department": "OUH Klinisk Genetik",
    "wants": ["harmonised-cram", "harmonised-vcf"],
    "purpose": "patient-treatment",
    "case_reference": "OUH-2026-0042",
    "urgency": "urgent",
}


def test_each_route_names_its_roles_in_the_document() -> None:
    paths = document()["paths"]
    assert paths["/v1/access/requests/{request_id}/decision"]["post"]["x-genomhub-roles"] == ["data-steward"]
    assert paths["/v1/access/requests"]["post"]["x-genomhub-roles"] == ["clinician"]
    assert "403" in paths["/v1/discovery"]["get"]["responses"]
    public = [o["operationId"] for m in paths.values() for o in m.values() if o.get("security") == []]
    # The signed URL is its own credential, bound to a grant; DRS's POSTs carry Passports,
    # checked by their signature; the key set is what anyone checks a visa with.
    assert sorted(public) == [
        "GetServiceInfo",
        "PostAccessURL",
        "PostObject",
        "downloadWorkingCopy",
        "getJwks",
    ]
    for methods in paths.values():
        for operation in methods.values():
            if operation["operationId"] not in public:
                assert operation.get("x-genomhub-roles"), operation["operationId"]


async def test_a_token_without_the_role_is_refused(world: World) -> None:
    status, body = await world.call("GET", "/v1/discovery?patient=NP-7&case_reference=c1", "rh-uploader")
    assert status == 403 and "clinician" in body["error"]
    status, _ = await world.call("GET", "/v1/discovery?patient=NP-7&case_reference=c1", None)
    assert status == 401


async def test_discovery_answers_per_region_and_is_logged(world: World) -> None:
    status, body = await world.call("GET", "/v1/discovery?patient=NP-7&case_reference=OUH-1", "ouh-clinician")
    assert status == 200
    assert (body["exists"], body["count"]) == (True, 2)
    hovedstaden, syddanmark = body["regions"]
    assert hovedstaden["region"] == "hovedstaden" and hovedstaden.get("samples") is None
    assert hovedstaden["analysis_types"] == ["WGS"] and hovedstaden["first_received"] == "2026-02"
    assert syddanmark["samples"] == ["OUH-1"]
    assert "url" not in str(body)
    (entry,) = world.store.entries(Region.HOVEDSTADEN)
    assert (entry.actor, entry.action, entry.case_reference) == ("syddanmark", "discovery", "OUH-1")
    assert entry.detail["answered"]["count"] == 2
    status, body = await world.call("GET", "/v1/discovery?patient=NP-7", "ouh-clinician")
    assert status == 422 and body["problems"][0]["field"] == "case_reference"


async def test_a_request_without_purpose_or_with_a_cpr_is_422(world: World) -> None:
    for body in (
        {k: v for k, v in REQUEST.items() if k != "purpose"},
        {**REQUEST, "case_reference": "pt 0102031234"},
        {**REQUEST, "department": "OUH", "extra": {"note": "010203-1234"}},
    ):
        response = await world.client.post(
            "/v1/access/requests", json=body, headers={"Authorization": "Bearer ouh-clinician"}
        )
        text = await response.text()
        assert response.status == 422, text
        assert_error_body(text, 422)
        assert "1234" not in text
    assert world.sent == [] and world.store.records(None) == []


async def test_the_story_request_decide_revoke(world: World) -> None:
    status, made = await world.call("POST", "/v1/access/requests", "ouh-clinician", REQUEST)
    assert status == 201, made
    request_id = made["request"]["request_id"]
    assert made["standing"] == "pending"
    assert [s["sample_id"] for s in made["request"]["samples"]] == ["RH-1"]  # RH-2 failed QC
    (requested,) = world.sent
    assert isinstance(requested, AccessRequested) and requested.requester.region is Region.SYDDANMARK

    status, inbox = await world.call("GET", "/v1/access/requests", "rh-steward")
    assert [r["request"]["request_id"] for r in inbox["requests"]] == [request_id]

    decision = f"/v1/access/requests/{request_id}/decision"
    for token in ("ngc-operator", "ouh-steward"):
        status, body = await world.call("POST", decision, token, {"grant": True})
        assert status == 403 and "hovedstaden's data steward" in body["error"], (token, body)
    refused = [e for e in world.store.entries() if e.action == "refused"]
    assert [e.actor for e in refused] == ["ngc", "syddanmark"]

    status, body = await world.call("POST", decision, "rh-steward", {"grant": False})
    assert status == 422  # a denial says why
    status, granted = await world.call("POST", decision, "rh-steward", {"grant": True})
    assert status == 201 and granted["standing"] == "granted"
    decided = world.sent[-1]
    assert isinstance(decided, AccessDecided) and decided.granted
    assert decided.valid_until == decided.decided_at + timedelta(days=14)
    status, _ = await world.call(
        "POST", decision, "rh-steward", {"grant": False, "reason": "changed my mind"}
    )
    assert status == 409

    revocation = f"/v1/access/requests/{request_id}/revocation"
    status, _ = await world.call("POST", revocation, "ouh-steward", {"reason": "no"})
    assert status == 403
    status, revoked = await world.call(
        "POST", revocation, "ngc-operator", {"reason": "emergency: wrong patient"}
    )
    assert status == 201 and revoked["standing"] == "revoked"
    assert isinstance(world.sent[-1], AccessRevoked) and world.sent[-1].revoked_by == "ngc"
    status, _ = await world.call("POST", revocation, "rh-steward", {"reason": "again"})
    assert status == 409

    actions = [e.action for e in world.store.entries()]
    assert actions == ["request", "refused", "refused", "decision", "refused", "revocation"]


async def test_a_grant_past_its_end_opens_nothing(world: World) -> None:
    _, made = await world.call("POST", "/v1/access/requests", "ouh-clinician", REQUEST)
    request_id = made["request"]["request_id"]
    await world.call("POST", f"/v1/access/requests/{request_id}/decision", "rh-steward", {"grant": True})
    world.clock.now += timedelta(days=14)
    status, body = await world.call("GET", f"/v1/access/requests/{request_id}", "ouh-clinician")
    assert status == 200 and body["standing"] == "expired"
    record = world.store.record(request_id)
    assert record is not None and record.standing(world.clock.now - timedelta(seconds=1)).value == "granted"


async def test_each_region_reads_its_slice_of_the_ledger_and_ngc_all(world: World) -> None:
    await world.call("GET", "/v1/discovery?patient=NP-7&case_reference=c1", "ouh-clinician")
    await world.call("POST", "/v1/access/requests", "ouh-clinician", REQUEST)
    world.store.project(
        KnownSample(Region.MIDTJYLLAND, "AU-1", "NP-9", AnalysisType.WGS, RECEIVED, True), "e9"
    )
    world.store.audit(Audit("midtjylland", "discovery", ["midtjylland"], {}), world.clock.now)
    _, ngc = await world.call("GET", "/v1/audit", "ngc-operator")
    _, hovedstaden = await world.call("GET", "/v1/audit", "rh-steward")
    assert len(ngc["entries"]) == 3
    assert [e["seq"] for e in hovedstaden["entries"]] == [1, 2]
    status, _ = await world.call("GET", "/v1/audit", "ouh-clinician")
    assert status == 403


async def test_the_ledger_refuses_edits_and_verify_names_the_first_edited_entry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        await world.call("GET", f"/v1/discovery?patient=NP-7&case_reference=case-{n}", "ouh-clinician")
    path = world.url.split("///", 1)[1]
    database = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        database.execute("UPDATE access_ledger SET case_reference = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        database.execute("DELETE FROM access_ledger WHERE seq = 3")
    database.rollback()
    monkeypatch.setenv("GENOMHUB_ACCESS_DATABASE_URL", world.url)
    try:
        verified = CliRunner().invoke(audit, ["verify"])
        assert verified.exit_code == 0 and "3 entries" in verified.output, verified.output
        # Someone with the database's keys drops the trigger and rewrites history.
        database.execute("DROP TRIGGER access_ledger_no_update")
        database.execute("UPDATE access_ledger SET case_reference = 'rewritten' WHERE seq = 2")
        database.commit()
        broken = CliRunner().invoke(audit, ["verify"])
        assert broken.exit_code == 1 and "entry 2" in broken.output, broken.output
    finally:
        database.close()


async def test_drs_object_metadata_needs_a_grant_in_force_for_its_sample_and_kind(world: World) -> None:
    found = {o.name: o for o in objects_of(harmonised(submission(1, region="hovedstaden", sample="RH-1")))}
    world.store.project_objects(found.values())
    cram, reads = found["RH-1.cram"].object_id, found["R1.fastq.gz"].object_id
    status, body = await world.call("GET", f"/ga4gh/drs/v1/objects/{cram}", "ouh-clinician")
    assert status == 403 and "PermissionDenied" in body["error"]
    _, made = await world.call("POST", "/v1/access/requests", "ouh-clinician", REQUEST)
    request_id = made["request"]["request_id"]
    await world.call("POST", f"/v1/access/requests/{request_id}/decision", "rh-steward", {"grant": True})
    status, drs = await world.call("GET", f"/ga4gh/drs/v1/objects/{cram}", "ouh-clinician")
    assert status == 200, drs
    assert (drs["id"], drs["size"], drs["checksums"]) == (
        cram,
        500,
        [{"checksum": found["RH-1.cram"].sha256, "type": "sha-256"}],
    )
    assert drs["self_uri"].startswith("drs://") and "s3://" not in str(drs)
    status, _ = await world.call("GET", f"/ga4gh/drs/v1/objects/{reads}", "ouh-clinician")
    assert status == 403  # raw reads were not requested
    status, _ = await world.call("GET", f"/ga4gh/drs/v1/objects/{reads}", "rh-steward")
    assert status == 200  # the owner reads its own
    world.clock.now += timedelta(days=14)
    status, _ = await world.call("GET", f"/ga4gh/drs/v1/objects/{cram}", "ouh-clinician")
    assert status == 403  # expired: checked at use
    status, _ = await world.call("GET", "/ga4gh/drs/v1/objects/" + "0" * 32, "ouh-clinician")
    assert status == 404
    reads_logged = [e for e in world.store.entries(Region.SYDDANMARK) if e.action == "read"]
    assert [e.request_id for e in reads_logged] == [request_id]


async def test_a_department_key_is_registered_by_its_regions_steward_or_ngc(
    world: World, tmp_path: Path
) -> None:
    _, public_path = write_key_pair(tmp_path / "ouh", "pass", "OUH Klinisk Genetik")
    text = public_path.read_text()
    body = {"region": "syddanmark", "department": "OUH Klinisk Genetik", "public_key": text}
    status, refused = await world.call("POST", "/v1/access/department-keys", "rh-steward", body)
    assert status == 403 and "syddanmark's data steward" in refused["error"], refused
    status, _ = await world.call("POST", "/v1/access/department-keys", "ouh-clinician", body)
    assert status == 403  # a clinician has not the role
    bad = {**body, "public_key": text.replace("PUBLIC", "PRIVATE")}
    status, problem = await world.call("POST", "/v1/access/department-keys", "ouh-steward", bad)
    assert status == 422 and problem["problems"][0]["field"] == "public_key", problem
    status, made = await world.call("POST", "/v1/access/department-keys", "ouh-steward", body)
    assert status == 201, made
    assert bytes.fromhex(made["fingerprint"]) == hashlib.sha256(read_public_key(public_path)).digest()
    status, _ = await world.call("POST", "/v1/access/department-keys", "ngc-operator", body)
    assert status == 201  # NGC's operator may register (here: replace) any region's key
    key = world.store.department_key(Region.SYDDANMARK, "OUH Klinisk Genetik")
    assert key is not None and key.public_key == read_public_key(public_path) and key.registered_by == "ngc"
    _, own = await world.call("GET", "/v1/access/department-keys", "ouh-clinician")
    _, other = await world.call("GET", "/v1/access/department-keys", "rh-steward")
    assert [k["department"] for k in own["keys"]] == ["OUH Klinisk Genetik"] and other["keys"] == []
    actions = [(e.actor, e.action) for e in world.store.entries(Region.SYDDANMARK)]
    assert actions == [
        ("hovedstaden", "refused"),
        ("syddanmark", "department-key"),
        ("ngc", "department-key"),
    ]


REQUEST_ARGS = [
    *("request", "--owner", "hovedstaden", "--patient", "NP-7", "--department", "OUH"),
    *("--want", "harmonised-vcf", "--range", "chr17:43044294-43125482", "--case", "OUH-9"),
]


def test_the_access_commands_work_against_the_api(tmp_path: Path) -> None:
    store = AccessStore(f"sqlite:///{tmp_path / 'cli.sqlite'}")
    store.project(KnownSample(Region.HOVEDSTADEN, "RH-1", "NP-7", AnalysisType.WGS, RECEIVED, True), "e1")

    async def emit(event: Event, event_id: str) -> None:
        return None

    app = make_web([])
    AccessApi(store, emit, 14).install(app, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    runner = CliRunner()
    try:
        with serve_app(app) as base:
            clinician = {"GENOMHUB_ACCESS_TOKEN": "ouh-clinician"}
            steward = {"GENOMHUB_ACCESS_TOKEN": "rh-steward"}
            found = runner.invoke(
                access, ["--url", base, "discover", "NP-7", "--case", "OUH-9"], env=clinician
            )
            assert found.exit_code == 0 and '"exists": true' in found.output, found.output
            made = runner.invoke(
                access,
                ["--url", base, *REQUEST_ARGS],
                env=clinician,
            )
            assert made.exit_code == 0, made.output
            # The server's own log lines land in the same captured stdout (one process here).
            found_id = re.search(r'"request_id": "([0-9a-f]{32})"', made.output)
            assert found_id is not None, made.output
            request_id = found_id.group(1)
            inbox = runner.invoke(access, ["--url", base, "list"], env=steward)
            assert f"{request_id}  pending" in inbox.output, inbox.output
            refused = runner.invoke(access, ["--url", base, "decide", request_id, "--grant"], env=clinician)
            assert refused.exit_code == 1 and "403" in refused.output + str(refused.stderr_bytes or ""), (
                refused.output
            )
            granted = runner.invoke(access, ["--url", base, "decide", request_id, "--grant"], env=steward)
            assert granted.exit_code == 0 and '"standing": "granted"' in granted.output, granted.output
            _, public_path = write_key_pair(tmp_path / "rh", "pass")
            registered = runner.invoke(
                access,
                [
                    *("--url", base, "department-key", "register", "--region", "hovedstaden"),
                    *("--department", "RH Genomic Medicine", "--public-key", str(public_path)),
                ],
                env=steward,
            )
            assert registered.exit_code == 0 and '"fingerprint"' in registered.output, registered.output
            listed = runner.invoke(access, ["--url", base, "department-key", "list"], env=steward)
            assert listed.output.count("RH Genomic Medicine") == 1, listed.output
            revoked = runner.invoke(
                access, ["--url", base, "revoke", request_id, "--reason", "done"], env=steward
            )
            assert revoked.exit_code == 0 and '"standing": "revoked"' in revoked.output, revoked.output
    finally:
        store.dispose()
