"""A hub and two regions' spokes on loopback, for the portal's browser test: the hub's access
service (its API as the service serves it, over a folder archive holding one encrypted CRAM),
the hub's projection and signed feeds, and Syddanmark's and Hovedstaden's spokes, each
verifying its own feed and serving its portal.

Every event the access service emits goes through the hub's projection into the spokes'
feeds, a checkpoint follows, and each spoke shows the revision its verifier proved, as the
publisher, MirrorMaker 2 and the spoke service do across brokers (those are the spoke
integration tests'); here all of it runs in one thread of its own, because Selenium's calls
block the test's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.access.api import AccessApi
from services.access.delivery import Delivery
from services.access.discovery import KnownSample
from services.access.objects import ArchivedObject, object_id
from services.access.store import AccessStore
from services.publisher.projection import Change, Projection
from services.publisher.writer import FeedWriter
from services.spoke.api import install as install_api
from services.spoke.hub import HubAccess
from services.spoke.portal import install as install_portal
from services.spoke.store import SpokeStore
from services.spoke.verifier import FeedVerifier
from shared.auth import Tokens, token_hash
from shared.encryption import BodyEncryptor, encrypt_chunks, load_archive_key, write_key_pair
from shared.events import (
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    AnalysisType,
    Deliverable,
    Event,
    Indexed,
    Region,
    SampleStatus,
    Submission,
)
from shared.headers import HeaderStore
from shared.http import make_web
from shared.tiers import ArchiveTiers
from shared.topics import feed_topic
from tests.ids import issued_id
from tests.support import free_port, post_json

TOKENS: dict[str, Any] = {
    "ouh-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "ouh-steward": {"holder": "syddanmark", "roles": ["data-steward"]},
    "rh-steward": {"holder": "hovedstaden", "roles": ["data-steward"]},
    "rh-clinician": {"holder": "hovedstaden", "roles": ["clinician"]},
}
PATIENT = "NP-7"
OWNED = "RH-1"
"""Hovedstaden's sample of the patient: its harmonised CRAM is the working copy."""
OWN = "OUH-5"
"""A sample of Syddanmark's own, which its spoke shows whole."""
DEPARTMENT = "OUH Klinisk Genetik"
DEPARTMENT_PASSPHRASE = "ouh-pass"
RECEIVED = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
SPOKES = (Region.SYDDANMARK, Region.HOVEDSTADEN)


def indexed(region: Region, sample: str, department: str) -> Indexed:
    return Indexed(
        submission=Submission(
            submission_id=issued_id(sample),
            region=region,
            department=department,
            sample_id=sample,
            patient_id=PATIENT,
            analysis_type="WGS",
            platform="ILLUMINA",
            received_at=RECEIVED,
        ),
        status=SampleStatus.HARMONISED,
        accepted=True,
        genome_equivalents=Decimal("1.000000"),
        files=3,
    )


@dataclass
class Mirror:
    """The hub's projection, a signed feed per spoke, and each spoke's verifier and store."""

    stores: dict[Region, SpokeStore]
    projection: Projection = field(default_factory=Projection)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    writers: dict[Region, FeedWriter] = field(init=False)
    verifiers: dict[Region, FeedVerifier] = field(init=False)
    offsets: dict[tuple[Region, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.writers = {r: FeedWriter(r, self.key, partitions=3) for r in self.stores}
        self.verifiers = {r: FeedVerifier(r, self.key.public_key()) for r in self.stores}

    def take(self, event: Event) -> None:
        now = datetime.now(UTC)
        changes: list[Change] = []
        if isinstance(event, Indexed):
            changes = self.projection.indexed(event, now)
        elif isinstance(event, AccessRequested):
            changes = self.projection.requested(event, now)
        elif isinstance(event, AccessDecided):
            changes = self.projection.decided(event, now)
        elif isinstance(event, AccessRevoked):
            changes = self.projection.revoked(event, now)
        for spoke, body in changes:
            if spoke in self.writers and (record := self.writers[spoke].publish(body, now)) is not None:
                self._deliver(spoke, record)
        for spoke, writer in self.writers.items():
            self._deliver(spoke, writer.checkpoint(now))

    def _deliver(self, spoke: Region, record: Any) -> None:
        at = self.offsets.get((spoke, record.partition), 0)
        self.offsets[(spoke, record.partition)] = at + 1
        self.writers[spoke].delivered(record.partition, at)
        outcome = self.verifiers[spoke].receive(record.partition, record.key, record.value)
        assert not outcome.refused, outcome.refused
        if outcome.revision is not None:
            self.stores[spoke].apply(outcome.revision)


@dataclass
class World:
    """What the test drives: each spoke's portal URL, the hub's, and what the hub emitted."""

    portals: dict[Region, str]
    hub_url: str
    sent: list[Event]
    plaintext: bytes = field(repr=False)
    department_secret: Path
    loop: asyncio.AbstractEventLoop = field(repr=False)

    def run(self, work: Any) -> Any:
        """Run a coroutine on the world's loop, from the test's thread."""
        done: Future[Any] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return done.result(timeout=60)


def archived_cram(tmp: Path, archive_public: bytes, headers: HeaderStore, plaintext: bytes) -> ArchivedObject:
    body = tmp / "store" / "hovedstaden" / OWNED / f"{OWNED}.cram"
    body.parent.mkdir(parents=True)
    encryptor = BodyEncryptor(archive_public)
    body.write_bytes(b"".join(encrypt_chunks(encryptor, [plaintext])))
    headers.write(body.as_uri(), encryptor.header)
    return ArchivedObject(
        object_id(Region.HOVEDSTADEN, OWNED, f"{OWNED}.cram"),
        Region.HOVEDSTADEN,
        OWNED,
        f"{OWNED}.cram",
        Deliverable.HARMONISED_CRAM,
        len(plaintext),
        hashlib.sha256(plaintext).hexdigest(),
        body.as_uri(),
        RECEIVED,
    )


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def started_world(tmp: Path) -> Iterator[World]:
    """The hub and the spokes on one loop in a thread of their own; stopped when done."""
    archive_secret, archive_public = write_key_pair(tmp / "archive", "archive-pass")
    archive_key = load_archive_key(archive_secret, archive_public, "archive-pass")
    headers = HeaderStore((tmp / "store").as_uri(), (tmp / "headers").as_uri())
    plaintext = os.urandom(3 << 20)
    found = archived_cram(tmp, archive_key.public, headers, plaintext)
    access = AccessStore(f"sqlite:///{tmp / 'access.sqlite'}")
    stores = {r: SpokeStore(f"sqlite:///{tmp / f'spoke-{r.value}.sqlite'}", feed_topic(r)) for r in SPOKES}
    mirror = Mirror(stores)
    for region, sample, department in (
        (Region.HOVEDSTADEN, OWNED, "Rigshospitalet"),
        (Region.SYDDANMARK, OWN, DEPARTMENT),
    ):
        access.project(
            KnownSample(region, sample, PATIENT, AnalysisType.WGS, RECEIVED, True), f"seen-{sample}"
        )
        mirror.take(indexed(region, sample, department))
    access.project_objects([found])
    department_secret, department_public = write_key_pair(tmp / "ouh", DEPARTMENT_PASSPHRASE, DEPARTMENT)
    sent: list[Event] = []

    async def emit(event: Event, event_id: str) -> None:
        sent.append(event)
        mirror.take(event)

    tiers = ArchiveTiers((tmp / "store").as_uri(), (tmp / "warm").as_uri(), (tmp / "cold").as_uri(), delay=0)
    tokens = Tokens({token_hash(t): e for t, e in TOKENS.items()})
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="portal-world", daemon=True)
    thread.start()
    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    hubs = {r: HubAccess(hub_url) for r in SPOKES}

    async def start() -> list[web.AppRunner]:
        hub_app = make_web([])
        delivery = Delivery(headers, lambda: archive_key, b"portal-test-url-secret", 60, tiers)
        AccessApi(access, emit, 14, delivery=delivery).install(hub_app, tokens)
        runners = [await _serve(hub_app, "127.0.0.1", hub_port)]
        for region, (host, port) in zip(SPOKES, ports.values(), strict=True):
            spoke_app = make_web([])
            install_api(spoke_app, stores[region], region, tokens)
            install_portal(spoke_app, stores[region], region, tokens, hubs[region])
            runners.append(await _serve(spoke_app, host, port))
        return runners

    # Two hosts of loopback, so the two portals' session cookies (host-scoped, not port-scoped)
    # stay apart in the one browser, as two regions' sites do.
    ports = {Region.SYDDANMARK: ("127.0.0.1", free_port()), Region.HOVEDSTADEN: ("localhost", free_port())}
    runners = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    key = {"region": "syddanmark", "department": DEPARTMENT, "public_key": department_public.read_text()}
    status, _ = post_json(f"{hub_url}/v1/access/department-keys", "ouh-steward", key)
    assert status == 201
    world = World(
        {r: f"http://{host}:{port}" for r, (host, port) in ports.items()},
        hub_url,
        sent,
        plaintext,
        department_secret,
        loop,
    )
    try:
        yield world
    finally:

        async def stop() -> None:
            for runner in runners:
                await runner.cleanup()
            for hub in hubs.values():
                await hub.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        access.dispose()
        for store in stores.values():
            store.dispose()
