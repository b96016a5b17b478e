"""Working copies through DRS: the access method a grantee sees, the short-lived URL, and
the download, a Crypt4GH file of the archive's body under a header re-encrypted to the
department's registered key, which the ``crypt4gh`` command line opens.

The archive here is a folder with a file encrypted as the receiver stores it (BodyEncryptor,
its header in the HeaderStore); the API runs under aiohttp's test server, events go to a
recording emitter (the broker's part is test_access_service.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import KeySet

from services.access.api import AccessApi
from services.access.commands import fetch
from services.access.delivery import Delivery
from services.access.discovery import KnownSample
from services.access.objects import ArchivedObject, object_id
from services.access.passports import Passports, VisaKey
from services.access.store import AccessStore, KnownRecall
from shared.auth import Tokens, token_hash
from shared.encryption import (
    CIPHER_SEGMENT_SIZE,
    BodyEncryptor,
    encrypt_chunks,
    load_archive_key,
    write_key_pair,
)
from shared.events import AnalysisType, Deliverable, Event, RecallRequested, Region, WorkingCopyIssued
from shared.headers import HeaderStore
from shared.http import make_web
from shared.tiers import ArchiveTiers
from tests.support import crypt4gh_decrypt
from tools.interop import drs_compliance

TOKENS: dict[str, Any] = {
    "ouh-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "ouh-steward": {"holder": "syddanmark", "roles": ["data-steward"]},
    "rh-steward": {"holder": "hovedstaden", "roles": ["data-steward"]},
}
DEPARTMENT = "OUH Klinisk Genetik"
RECEIVED = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)
ISSUER = "https://genomhub.test/access"
SIZE = 12 << 20
LARGER_THAN_SOCKETS_BUFFER = 80 << 20
"""A body a revocation must cut mid-download: more than loopback's sockets hold between
the two sides (Linux lets a receive buffer grow to 32 MiB and a send buffer to 4 MiB)."""


@dataclass
class Copies:
    client: TestClient[Any, Any]
    store: AccessStore
    sent: list[Event]
    found: ArchivedObject
    plaintext: bytes = field(repr=False)  # a repr of megabytes, made on every task switch, took seconds
    body_path: Path
    secret_key: Path
    tiers: ArchiveTiers
    shift: list[timedelta]

    async def call(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, await response.json()

    async def granted(self) -> str:
        """A Syddanmark department's key registered, and its request for RH-1's CRAM granted."""
        public = (self.secret_key.parent / "archive.pub").read_text()
        key = {"region": "syddanmark", "department": DEPARTMENT, "public_key": public}
        status, _ = await self.call("POST", "/v1/access/department-keys", "ouh-steward", key)
        assert status == 201
        asked = {
            "owner": "hovedstaden",
            "samples": ["RH-1"],
            "department": DEPARTMENT,
            "wants": ["harmonised-cram"],
            "purpose": "patient-treatment",
            "case_reference": "OUH-2026-0042",
            "urgency": "urgent",
        }
        _, made = await self.call("POST", "/v1/access/requests", "ouh-clinician", asked)
        request_id: str = made["request"]["request_id"]
        status, _ = await self.call(
            "POST", f"/v1/access/requests/{request_id}/decision", "rh-steward", {"grant": True}
        )
        assert status == 201
        return request_id

    async def url(self, request_id: str) -> str:
        status, access = await self.call(
            "GET", f"/ga4gh/drs/v1/objects/{self.found.object_id}/access/{request_id}", "ouh-clinician"
        )
        assert status == 200, access
        url: str = access["url"]
        return url[url.index("/v1/working-copies/") :]


@pytest.fixture
async def copies(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Copies]:
    size: int = getattr(request, "param", SIZE)
    archive_secret, archive_public = write_key_pair(tmp_path / "archive", "archive-pass")
    archive_key = load_archive_key(archive_secret, archive_public, "archive-pass")
    store_dir, headers_dir = tmp_path / "store", tmp_path / "headers"
    headers = HeaderStore(store_dir.as_uri(), headers_dir.as_uri())
    plaintext = os.urandom(size)
    body_path = store_dir / "hovedstaden" / "RH-1" / "RH-1.cram"
    body_path.parent.mkdir(parents=True)
    encryptor = BodyEncryptor(archive_key.public)
    body_path.write_bytes(b"".join(encrypt_chunks(encryptor, [plaintext])))
    headers.write(body_path.as_uri(), encryptor.header)
    found = ArchivedObject(
        object_id(Region.HOVEDSTADEN, "RH-1", "RH-1.cram"),
        Region.HOVEDSTADEN,
        "RH-1",
        "RH-1.cram",
        Deliverable.HARMONISED_CRAM,
        size,
        hashlib.sha256(plaintext).hexdigest(),
        body_path.as_uri(),
        RECEIVED,
    )
    store = AccessStore(f"sqlite:///{tmp_path / 'access.sqlite'}")
    store.project(KnownSample(Region.HOVEDSTADEN, "RH-1", "NP-7", AnalysisType.WGS, RECEIVED, True), "e1")
    store.project_objects([found])
    department_secret, _ = write_key_pair(tmp_path / "ouh", "ouh-pass", DEPARTMENT)
    sent: list[Event] = []
    shift = [timedelta(0)]  # a test moves the service's clock forward by this much

    async def emit(event: Event, event_id: str) -> None:
        sent.append(event)

    tiers = ArchiveTiers(
        store_dir.as_uri(), (tmp_path / "warm").as_uri(), (tmp_path / "cold").as_uri(), delay=0
    )
    delivery = Delivery(headers, lambda: archive_key, b"test-url-secret", 5, tiers)
    app = make_web([])
    passports = Passports(VisaKey.of(None, tmp_path / "visa"), ISSUER)
    api = AccessApi(
        store, emit, 14, delivery=delivery, passports=passports, clock=lambda: datetime.now(UTC) + shift[0]
    )
    api.install(app, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    async with TestClient(TestServer(app)) as client:
        yield Copies(client, store, sent, found, plaintext, body_path, department_secret, tiers, shift)
    store.dispose()


def decrypted(copy: bytes, secret_key: Path) -> bytes:
    """The plaintext the ``crypt4gh`` command line makes of ``copy`` with the department's key."""
    return crypt4gh_decrypt(copy, secret_key, "ouh-pass")


def issued(copies: Copies) -> list[WorkingCopyIssued]:
    return [e for e in copies.sent if isinstance(e, WorkingCopyIssued)]


async def test_a_grantee_fetches_a_working_copy_its_department_key_opens(copies: Copies) -> None:
    oid = copies.found.object_id
    status, refused = await copies.call("GET", f"/ga4gh/drs/v1/objects/{oid}", "ouh-clinician")
    assert status == 403 and (refused["status_code"], refused["msg"]) == (403, refused["error"]), refused
    request_id = await copies.granted()
    status, drs = await copies.call("GET", f"/ga4gh/drs/v1/objects/{oid}", "ouh-clinician")
    assert status == 200 and drs["access_methods"] == [{"type": "https", "access_id": request_id}], drs
    _, owners = await copies.call("GET", f"/ga4gh/drs/v1/objects/{oid}", "rh-steward")
    assert owners["access_methods"] == []  # the owner reads the metadata; copies go to grantees

    response = await copies.client.get(await copies.url(request_id))
    assert response.status == 200
    copy = await response.read()
    assert len(copy) == int(response.headers["Content-Length"])
    header_size = len(copy) - (copies.body_path.stat().st_size)
    assert copy[header_size:] == copies.body_path.read_bytes()  # the body as stored, not decrypted
    plaintext = await asyncio.to_thread(decrypted, copy, copies.secret_key)
    assert hashlib.sha256(plaintext).hexdigest() == drs["checksums"][0]["checksum"]

    (event,) = issued(copies)
    assert (event.bytes_sent, event.sha256, event.complete) == (
        len(copy),
        hashlib.sha256(copy).hexdigest(),
        True,
    )
    assert event.part == "whole-file" and event.requester.department == DEPARTMENT
    (entry,) = [e for e in copies.store.entries(Region.HOVEDSTADEN) if e.action == "delivery"]
    assert entry.request_id == request_id and entry.detail["sha256"] == event.sha256


async def test_a_url_that_is_not_ours_or_another_grant_opens_nothing(copies: Copies) -> None:
    request_id = await copies.granted()
    path = await copies.url(request_id)
    payload, _, signature = path.rsplit("/", 1)[1].partition(".")
    forged = f"/v1/working-copies/{payload}.{signature[:-2]}AA"
    response = await copies.client.get(forged)
    assert response.status == 403 and "signature" in (await response.json())["error"]
    status, body = await copies.call(
        "GET", f"/ga4gh/drs/v1/objects/{copies.found.object_id}/access/{'0' * 32}", "ouh-clinician"
    )
    assert status == 403 and body["status_code"] == 403
    status, body = await copies.call(
        "GET", f"/ga4gh/drs/v1/objects/{'0' * 32}/access/{request_id}", "ouh-clinician"
    )
    assert status == 404 and body["msg"] == "no such object"
    assert issued(copies) == []


@pytest.mark.parametrize("copies", [LARGER_THAN_SOCKETS_BUFFER], indirect=True)
async def test_a_revocation_cuts_a_download_in_progress(copies: Copies) -> None:
    request_id = await copies.granted()
    response = await copies.client.get(await copies.url(request_id))
    assert response.status == 200
    first = await response.content.readexactly(1 << 20)
    status, _ = await copies.call(
        "POST", f"/v1/access/requests/{request_id}/revocation", "rh-steward", {"reason": "wrong patient"}
    )
    assert status == 201
    got = len(first)
    with pytest.raises(aiohttp.ClientPayloadError):
        while chunk := await response.content.read(1 << 16):
            got += len(chunk)
    assert got < int(response.headers["Content-Length"])
    (event,) = issued(copies)
    assert not event.complete and event.bytes_sent < copies.body_path.stat().st_size
    status, _ = await copies.call(
        "GET", f"/ga4gh/drs/v1/objects/{copies.found.object_id}/access/{request_id}", "ouh-clinician"
    )
    assert status == 403


async def test_a_body_failing_its_check_is_never_sent(copies: Copies) -> None:
    request_id = await copies.granted()
    body = bytearray(copies.body_path.read_bytes())
    bad_segment = 40
    body[bad_segment * CIPHER_SEGMENT_SIZE + 100] ^= 1
    copies.body_path.write_bytes(bytes(body))
    response = await copies.client.get(await copies.url(request_id))
    got = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        while chunk := await response.content.read(1 << 16):
            got += chunk
    header_size = int(response.headers["Content-Length"]) - len(body)
    assert len(got) <= header_size + bad_segment * CIPHER_SEGMENT_SIZE  # nothing of the bad segment
    assert bytes(got[header_size:]) == bytes(body[: len(got) - header_size])
    (event,) = issued(copies)
    assert not event.complete
    (entry,) = [e for e in copies.store.entries() if e.action == "delivery"]
    assert "segment 40" in entry.detail["ended"]


async def test_genomhub_fetch_decrypts_checks_and_is_refused_once_revoked(
    copies: Copies, tmp_path: Path
) -> None:
    request_id = await copies.granted()
    server = copies.client.server
    uri = f"drs://127.0.0.1:{server.port}/{copies.found.object_id}"
    out = tmp_path / "RH-1.cram"
    keys = copies.secret_key.parent
    arguments = [uri, "-o", str(out), "--secret-key", str(keys / "archive.sec")]
    arguments += ["--public-key", str(keys / "archive.pub")]
    env = {"GENOMHUB_ACCESS_TOKEN": "ouh-clinician", "C4GH_PASSPHRASE": "ouh-pass"}
    fetched = await asyncio.to_thread(CliRunner().invoke, fetch, arguments, env=env)
    assert fetched.exit_code == 0, fetched.output
    assert "verified" in fetched.output and out.read_bytes() == copies.plaintext
    out.unlink()
    status, _ = await copies.call(
        "POST", f"/v1/access/requests/{request_id}/revocation", "rh-steward", {"reason": "treatment ended"}
    )
    assert status == 201
    refused = await asyncio.to_thread(CliRunner().invoke, fetch, arguments, env=env)
    assert refused.exit_code == 1 and "PermissionDenied" in refused.output, refused.output
    assert not out.exists() and not out.with_name("RH-1.cram.part").exists()


async def test_a_cold_file_answers_202_until_its_recall_stages_it(copies: Copies) -> None:
    """DRS 1.4's 202 with Retry-After: the first request starts the recall (recall-requested),
    the next joins it with the archive's estimate, and once staged the same request succeeds."""
    request_id = await copies.granted()
    path = "hovedstaden/RH-1/RH-1.cram"
    cold = copies.tiers.cold_tier()
    with copies.body_path.open("rb") as stream:
        cold.store(path, stream)
    copies.body_path.unlink()  # cooled to tape, as the archive's mover leaves it
    access = f"/ga4gh/drs/v1/objects/{copies.found.object_id}/access/{request_id}"
    headers = {"Authorization": "Bearer ouh-clinician"}

    first = await copies.client.get(access, headers=headers)
    waiting = await first.json()
    assert first.status == 202 and int(first.headers["Retry-After"]) >= 1, waiting
    assert waiting["state"] == "SUBMITTED" and waiting["status_code"] == 202
    (asked,) = [e for e in copies.sent if isinstance(e, RecallRequested)]
    assert (asked.recall_id, asked.paths) == (waiting["recall_id"], [path])

    expected = datetime.now(UTC) + timedelta(minutes=10)  # the archive's scheduler says, in recall-updated
    copies.store.project_recall(
        KnownRecall(path, asked.recall_id, "STARTED", expected, None, datetime.now(UTC))
    )
    again = await copies.client.get(access, headers=headers)
    assert again.status == 202 and 590 <= int(again.headers["Retry-After"]) <= 600
    assert (await again.json())["recall_id"] == asked.recall_id
    assert len([e for e in copies.sent if isinstance(e, RecallRequested)]) == 1  # joined, not asked twice
    keys = copies.secret_key.parent
    uri = f"drs://127.0.0.1:{copies.client.server.port}/{copies.found.object_id}"
    arguments = [
        uri,
        "-o",
        str(copies.body_path.with_suffix(".out")),
        "--secret-key",
        str(keys / "archive.sec"),
    ]
    arguments += ["--public-key", str(keys / "archive.pub")]
    env = {"GENOMHUB_ACCESS_TOKEN": "ouh-clinician", "C4GH_PASSPHRASE": "ouh-pass"}
    waited = await asyncio.to_thread(CliRunner().invoke, fetch, arguments, env=env)
    assert waited.exit_code == 3 and f"recall {asked.recall_id} is STARTED; try again in" in waited.output

    cold.recall(path, pin_seconds=3600)  # the gateway stages it (this folder tape has no delay)
    staged = datetime.now(UTC)
    copies.store.project_recall(
        KnownRecall(path, asked.recall_id, "COMPLETED", None, staged + timedelta(hours=1), staged)
    )
    url = await copies.url(request_id)
    response = await copies.client.get(url)
    assert response.status == 200
    copy = await response.read()
    assert await asyncio.to_thread(decrypted, copy, copies.secret_key) == copies.plaintext


async def test_a_request_lists_its_objects_and_opens_them_only_while_granted(copies: Copies) -> None:
    oid = copies.found.object_id
    request_id = await copies.granted()
    status, listed = await copies.call("GET", f"/v1/access/requests/{request_id}/objects", "ouh-clinician")
    assert status == 200 and [o["id"] for o in listed["objects"]] == [oid], listed
    assert listed["objects"][0]["access_methods"] == [{"type": "https", "access_id": request_id}]
    _, owners = await copies.call("GET", f"/v1/access/requests/{request_id}/objects", "rh-steward")
    assert [o["access_methods"] for o in owners["objects"]] == [[]]  # copies go to the grantee
    status, _ = await copies.call(
        "POST", f"/v1/access/requests/{request_id}/revocation", "rh-steward", {"reason": "case closed"}
    )
    assert status == 201
    _, revoked = await copies.call("GET", f"/v1/access/requests/{request_id}/objects", "ouh-clinician")
    assert [o["access_methods"] for o in revoked["objects"]] == [[]]
    reads = [e for e in copies.store.entries(Region.SYDDANMARK) if e.detail.get("drs_objects") == [oid]]
    assert len(reads) == 3 and all(e.request_id == request_id for e in reads)
    status, _ = await copies.call("GET", f"/v1/access/requests/{'0' * 32}/objects", "ouh-clinician")
    assert status == 404


async def _post(copies: Copies, path: str, body: Any) -> tuple[int, Any]:
    response = await copies.client.post(path, json=body)
    return response.status, await response.json()


async def test_a_grant_as_a_passport_opens_drs_without_a_token(copies: Copies) -> None:
    request_id = await copies.granted()
    status, issued_view = await copies.call(
        "GET", f"/v1/access/requests/{request_id}/passport", "ouh-clinician"
    )
    assert status == 200, issued_view
    (visa_text,) = issued_view["visas"]
    _, jwks = await copies.call("GET", "/.well-known/jwks.json", None)
    keys = KeySet.import_key_set(jwks)  # anyone checks a visa offline with the published key
    claims = jwt.decode(visa_text, keys, algorithms=["ES256"]).claims
    assert claims["iss"] == ISSUER and claims["sub"] == "syddanmark"
    assert claims["ga4gh_visa_v1"]["type"] == "ControlledAccessGrants"
    assert claims["ga4gh_visa_v1"]["value"] == f"{ISSUER}/v1/access/requests/{request_id}"
    assert jwt.decode(issued_view["passport"], keys).claims["ga4gh_passport_v1"] == [visa_text]

    passports = {"passports": [issued_view["passport"]]}
    oid = copies.found.object_id
    status, drs = await _post(copies, f"/ga4gh/drs/v1/objects/{oid}", passports)
    assert status == 200 and drs["access_methods"] == [{"type": "https", "access_id": request_id}], drs
    status, access = await _post(copies, f"/ga4gh/drs/v1/objects/{oid}/access/{request_id}", passports)
    assert status == 200, access
    response = await copies.client.get(access["url"][access["url"].index("/v1/working-copies/") :])
    copy = await response.read()
    assert await asyncio.to_thread(decrypted, copy, copies.secret_key) == copies.plaintext
    entries = copies.store.entries(Region.HOVEDSTADEN)
    assert [e.action for e in entries if e.action in ("passport", "delivery")] == ["passport", "delivery"]


async def test_a_passport_opens_nothing_it_should_not(copies: Copies, tmp_path: Path) -> None:
    request_id = await copies.granted()
    oid = copies.found.object_id
    _, issued_view = await copies.call("GET", f"/v1/access/requests/{request_id}/passport", "ouh-clinician")
    good = issued_view["passport"]
    stranger = VisaKey.of(None, tmp_path / "stranger")  # the same claims, signed by someone else
    claims = jwt.decode(
        good, KeySet.import_key_set((await copies.call("GET", "/.well-known/jwks.json", None))[1])
    ).claims
    forged = stranger.sign(claims, ISSUER)
    for body, status, said in (
        ({}, 422, "passports refused"),
        ({"passports": ["not.a.jwt"]}, 401, "not a JWT signed by this service"),
        ({"passports": [forged]}, 401, "not a JWT signed by this service"),
        ({"passports": [good, "x"]}, 401, "not a JWT signed by this service"),
    ):
        got, refused = await _post(copies, f"/ga4gh/drs/v1/objects/{oid}/access/{request_id}", body)
        assert (got, refused["status_code"]) == (status, status) and said in refused["msg"], refused
    got, refused = await _post(
        copies, f"/ga4gh/drs/v1/objects/{oid}/access/{'0' * 32}", {"passports": [good]}
    )
    assert got == 403 and "no visa claims that access id" in refused["msg"]
    status, _ = await copies.call("GET", f"/v1/access/requests/{request_id}/passport", "rh-steward")
    assert status == 403  # stewards decide; clinicians carry visas

    revoked = {"reason": "wrong patient"}
    assert (await copies.call("POST", f"/v1/access/requests/{request_id}/revocation", "rh-steward", revoked))[
        0
    ] == 201
    got, refused = await _post(
        copies, f"/ga4gh/drs/v1/objects/{oid}/access/{request_id}", {"passports": [good]}
    )
    assert got == 403 and "no grant in force" in refused["msg"]  # the visa verifies; the grant is gone
    status, said = await copies.call("GET", f"/v1/access/requests/{request_id}/passport", "ouh-clinician")
    assert status == 409, said

    copies.shift[0] = timedelta(days=15)  # past the grant's end: the visa itself has expired
    got, refused = await _post(copies, f"/ga4gh/drs/v1/objects/{oid}", {"passports": [good]})
    assert got == 401 and "expired" in refused["msg"]


async def test_the_ga4gh_drs_compliance_suite_passes_with_a_token_and_with_a_passport(copies: Copies) -> None:
    """The GA4GH DRS compliance suite (PyPI ``drs-compliance-suite``, which checks DRS 1.2.0):
    service-info, the object's metadata and its access URL, each by bearer token and by
    Passport (DRS's POST form), every status, content type and response schema."""
    request_id = await copies.granted()
    _, issued_view = await copies.call("GET", f"/v1/access/requests/{request_id}/passport", "ouh-clinician")
    oid = copies.found.object_id
    by_token = {"drs_id": oid, "auth_type": "bearer", "auth_token": "ouh-clinician", "is_bundle": False}
    by_passport = {
        "drs_id": oid,
        "auth_type": "passport",
        "auth_token": [issued_view["passport"]],
        "is_bundle": False,
    }
    config = {
        "service_info": {"auth_type": "none", "auth_token": ""},
        "drs_object_info": [by_token, by_passport],
        "drs_object_access": [by_token, by_passport],
    }
    base = str(copies.client.make_url("/ga4gh/drs/v1"))
    report = await asyncio.to_thread(drs_compliance.run, base, config)
    checked = drs_compliance.cases(report)
    failed = [c for c in checked if c[3] != "PASS"]
    assert not failed, failed
    phases = {phase for phase, *_ in checked}
    assert phases == {"service info", "drs object info", "drs object access"}, phases
    # 3 of service-info, 5 of each object read, 3 of each access URL: by token and by Passport
    assert report["summary"] == {"unknown": 0, "passed": 19, "warned": 0, "failed": 0, "skipped": 0}
