"""A spoke's ``GET /v1/samples`` takes the hub's filters over what it holds: region, analysis,
status, days of receipt (a summary by the month it carries), a substring, and pages whose
cursors go through every sample once; what it cannot read is a 422 naming the parameter."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select

from services.publisher.writer import FeedWriter
from services.spoke.api import install
from services.spoke.portal import install as install_portal
from services.spoke.search import encode_cursor
from services.spoke.store import MIGRATIONS, SpokeStore
from services.spoke.tables import metadata, spoke_samples
from services.spoke.verifier import FeedVerifier
from shared.auth import Tokens, token_hash
from shared.database import alembic_config, make_engine
from shared.envelope import canonical_json
from shared.events import AnalysisType, Region, SampleStatus
from shared.feed import SampleBody
from shared.http import make_web
from shared.topics import feed_topic
from tests.postgres import engine_urls, postgres_server
from tests.unit.spoke.test_spoke_feed import NOW, SPOKE, published, record, summary
from tests.unit.spoke.test_spoke_stats import TOKENS
from tests.unit.spoke.test_spoke_store import revisions

__all__ = ["postgres_server"]

OCTOBER = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)  # 1 November in Copenhagen
CATALOGUE: list[SampleBody] = [
    summary("S1"),
    summary("S2").model_copy(update={"status": SampleStatus.REJECTED, "received_month": "2026-10"}),
    summary("M1", Region.MIDTJYLLAND).model_copy(update={"analysis_type": AnalysisType.WES}),
    record("OWN1"),
    record("OWN2").model_copy(
        update={"received_at": OCTOBER, "department": "Molekylær Medicin, OUH", "submission_id": "cd" * 16}
    ),
    *(summary(f"N{i:02d}", Region.NORDJYLLAND) for i in range(7)),
]


spoke_url = engine_urls("spoke")
"""Each test once on SQLite (embedded) and once on PostgreSQL (a region's production store)."""


@pytest.fixture
async def spoke(spoke_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    store = SpokeStore(spoke_url, feed_topic(SPOKE))
    app = make_web([])
    install(app, store, SPOKE, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    writer = FeedWriter(SPOKE, Ed25519PrivateKey.generate(), partitions=3)
    log = published(writer, CATALOGUE)
    log.append(writer.checkpoint(NOW))
    (revision,) = revisions(FeedVerifier(SPOKE, writer.key.public_key()), log)
    store.apply(revision)
    async with TestClient(TestServer(app)) as client:
        yield client
    store.dispose()


async def found(client: TestClient[Any, Any], **query: str) -> list[str]:
    response = await client.get("/v1/samples", params=query, headers={"Authorization": "Bearer ouh"})
    assert response.status == 200, await response.text()
    return [f"{s['region']}/{s['sample_id']}" for s in (await response.json())["samples"]]


async def refused(client: TestClient[Any, Any], **query: str) -> list[str]:
    response = await client.get("/v1/samples", params=query, headers={"Authorization": "Bearer ouh"})
    assert response.status == 422, await response.text()
    return [p["field"] for p in (await response.json())["problems"]]


async def test_the_hubs_filters_find_what_the_spoke_holds(spoke: TestClient[Any, Any]) -> None:
    assert await found(spoke, region="hovedstaden") == ["hovedstaden/S1", "hovedstaden/S2"]
    assert await found(spoke, analysis="WES") == ["midtjylland/M1"]
    assert await found(spoke, status="rejected") == ["hovedstaden/S2"]
    assert await found(spoke, kind="record") == ["syddanmark/OWN1", "syddanmark/OWN2"]
    # A record by its moment of receipt on Copenhagen's calendar: 23:30 UTC on 31 October is
    # 1 November there; a summary by its month, found by any day of it.
    assert await found(spoke, kind="record", received_from="2026-11-01", received_to="2026-11-01") == [
        "syddanmark/OWN2"
    ]
    assert await found(spoke, received_to="2026-10-31") == ["hovedstaden/S2"]
    assert await found(spoke, region="hovedstaden", received_from="2026-11-30") == ["hovedstaden/S1"]
    # A substring of what each entry holds, in any case: a record's department too.
    assert await found(spoke, q="molekylær") == ["syddanmark/OWN2"]
    assert await found(spoke, q="CDCD") == ["syddanmark/OWN2"]
    assert await found(spoke, q="m1") == ["midtjylland/M1"]
    assert await found(spoke, q="n0", region="hovedstaden") == []
    assert await found(spoke, q="%_") == []  # LIKE's own characters are plain text


async def test_pages_go_through_every_sample_once(spoke: TestClient[Any, Any]) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await spoke.get("/v1/samples", params=query, headers={"Authorization": "Bearer ouh"})
        page = await response.json()
        assert response.status == 200 and len(page["samples"]) <= 3
        seen += [f"{s['region']}/{s['sample_id']}" for s in page["samples"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == len(CATALOGUE) and seen == sorted(set(seen))
    assert await found(spoke, limit="500") == seen


async def test_what_the_spoke_cannot_read_is_refused_naming_it(spoke: TestClient[Any, Any]) -> None:
    assert await refused(spoke, regoin="hovedstaden") == ["regoin"]
    assert await refused(spoke, received_from="2026-11") == ["received_from"]
    assert await refused(spoke, received_from="2026-11-02", received_to="2026-11-01") == ["received_to"]
    assert await refused(spoke, q="x") == ["q"]
    assert await refused(spoke, limit="501") == ["limit"]
    for forged in ("not-a-cursor!", encode_cursor("atlantis/S1"), encode_cursor("hovedstaden"), "____"):
        assert await refused(spoke, cursor=forged) == ["cursor"], forged


def test_a_catalogue_stored_before_the_search_columns_is_searchable_after_the_upgrade(spoke_url: str) -> None:
    url = spoke_url
    config = alembic_config(url, MIGRATIONS, "spoke")
    command.upgrade(config, "0001_spoke")
    own = record("OWN1")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(spoke_samples).values(  # only the columns 0001 had
                key="syddanmark/OWN1", kind="record", seq=1, digest="0" * 64,
                body=canonical_json(own.model_dump(mode="json")).decode(),
            )
        )  # fmt: skip
    engine.dispose()
    command.upgrade(config, "head")
    engine = make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(select(spoke_samples)).one()
    engine.dispose()
    assert (row.region, row.analysis_type, row.status, row.received_month) == (
        "syddanmark",
        "WGS",
        "harmonised",
        "2026-11",
    )
    assert row.received_at == own.received_at and "klinisk genetik, ouh" in row.search_text


def test_the_migrated_schema_is_the_tables_the_store_writes(spoke_url: str) -> None:
    store = SpokeStore(spoke_url, feed_topic(SPOKE))
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_spoke"})
            differences = compare_metadata(context, metadata)
    finally:
        store.dispose()
    assert differences == []


@pytest.fixture
async def portal(spoke_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    """Syddanmark's portal over the catalogue above (no hub: the overview needs none)."""
    store = SpokeStore(spoke_url, feed_topic(SPOKE))
    writer = FeedWriter(SPOKE, Ed25519PrivateKey.generate(), partitions=3)
    log = published(writer, CATALOGUE)
    log.append(writer.checkpoint(NOW))
    (revision,) = revisions(FeedVerifier(SPOKE, writer.key.public_key()), log)
    store.apply(revision)
    app = make_web([])
    install_portal(app, store, SPOKE, Tokens({token_hash(t): e for t, e in TOKENS.items()}), None)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/portal/login", data={"token": "ouh"}, allow_redirects=False)
        assert response.status == 303
        yield client
    store.dispose()


async def overview(client: TestClient[Any, Any], path: str) -> tuple[int, list[str], str | None, str]:
    """The status, the samples shown (in order), the next page's link and the page."""
    response = await client.get(path)
    html = await response.text()
    shown = re.findall(r"<tr data-kind=\w+><td>[^<]*</td><td><code>([^<]+)</code>", html)
    following = re.search(r"<a rel=next href='([^']+)'>", html)
    return response.status, shown, unescape(following.group(1)) if following else None, html


async def test_the_portals_overview_searches_and_pages_as_the_api_does(portal: TestClient[Any, Any]) -> None:
    status, shown, following, _ = await overview(portal, "/portal/?q=molekyl%C3%A6r&kind=&region=")
    assert status == 200 and shown == ["OWN2"] and following is None  # empty fields: no filter
    seen: list[str] = []
    path: str | None = "/portal/?limit=5"
    while path is not None:
        status, shown, path, _ = await overview(portal, path)
        assert status == 200 and len(shown) <= 5
        seen += shown
    assert sorted(seen) == sorted(b.sample_id for b in CATALOGUE) and len(seen) == len(set(seen))
    status, shown, _, html = await overview(portal, "/portal/?q=%3Cscript%3Ealert(1)")
    assert status == 200 and shown == [] and "<script>alert" not in html and "&lt;script&gt;" in html
    for refused in (
        "region=atlantis",
        "cursor=forged!",
        "received_from=2026-11",
        "kind=x",
        "limit=0",
        "q=a&q=b",
    ):
        status, shown, _, html = await overview(portal, f"/portal/?{refused}")
        assert status == 422 and shown == [], refused
        assert f"</strong> {refused.split('=')[0]}: " in html, refused  # the error names the field
