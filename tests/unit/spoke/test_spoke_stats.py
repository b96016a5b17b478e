"""A spoke's ``GET /v1/stats``: the hub's statistics over the revision the spoke shows, every
region's samples at discovery's granularity, naming that revision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter
from services.spoke.api import install
from services.spoke.store import SpokeStore
from services.spoke.verifier import FeedVerifier
from shared.auth import Tokens, token_hash
from shared.events import Region
from shared.http import make_web
from shared.topics import feed_topic
from tests.unit.spoke.test_spoke_feed import NOW, SPOKE, published, record, summary
from tests.unit.spoke.test_spoke_store import revisions

TOKENS: dict[str, Any] = {
    "ouh": {"holder": "syddanmark", "roles": ["clinician"]},
    "rh": {"holder": "hovedstaden", "roles": ["clinician"]},
}


@pytest.fixture
async def spoke(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], SpokeStore]]:
    store = SpokeStore(f"sqlite:///{tmp_path / 'spoke.sqlite'}", feed_topic(SPOKE))
    app = make_web([])
    install(app, store, SPOKE, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    async with TestClient(TestServer(app)) as client:
        yield client, store
    store.dispose()


async def stats(client: TestClient[Any, Any], token: str, **query: str) -> tuple[int, Any]:
    response = await client.get("/v1/stats", params=query, headers={"Authorization": f"Bearer {token}"})
    return response.status, await response.json()


async def test_the_spokes_statistics_are_the_hubs_over_its_revision(
    spoke: tuple[TestClient[Any, Any], SpokeStore],
) -> None:
    client, store = spoke
    assert (await stats(client, "ouh"))[0] == 503  # no verified revision yet
    writer = FeedWriter(SPOKE, Ed25519PrivateKey.generate(), partitions=3)
    log = published(
        writer, [summary("S1"), summary("S2", files=3), summary("M1", Region.MIDTJYLLAND), record("OWN1")]
    )
    log.append(writer.checkpoint(NOW))
    (revision,) = revisions(FeedVerifier(SPOKE, writer.key.public_key()), log)
    store.apply(revision)

    status, answered = await stats(client, "ouh")
    assert status == 200 and answered["revision"]["revision"] == revision.revision
    rows = {
        (r["region"], r["month"], r["status"]): (r["samples"], Decimal(r["genome_equivalents"]))
        for r in answered["rows"]
    }
    assert rows == {
        ("hovedstaden", "2026-11", "harmonised"): (2, Decimal(2)),
        ("midtjylland", "2026-11", "harmonised"): (1, Decimal(1)),
        ("syddanmark", "2026-11", "harmonised"): (1, Decimal(1)),
    }
    assert answered["samples"] == 4 and Decimal(answered["genome_equivalents"]) == 4
    status, one = await stats(client, "ouh", region="hovedstaden")
    assert status == 200 and [r["region"] for r in one["rows"]] == ["hovedstaden"] and one["samples"] == 2
    assert (await stats(client, "ouh", regoin="hovedstaden"))[0] == 422  # a misspelt filter is refused
    assert (await stats(client, "rh"))[0] == 403  # another region reads its own spoke
