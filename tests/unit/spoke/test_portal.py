"""The portal as a hostile or careless visitor meets it: without a session, with another
region's or NGC's token, with a form made elsewhere, with a way off the site, with what a
person mistypes, and with the hub away. And every value the hub or the feed says is shown as
text, never as markup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.spoke import pages
from services.spoke.hub import HubAccess
from services.spoke.portal import SESSION_COOKIE, request_body
from services.spoke.portal import install as install_portal
from services.spoke.store import SpokeStore
from shared.auth import Principal, Role, Tokens, token_hash
from shared.events import Region
from shared.http import make_web
from shared.topics import feed_topic
from tests.support import free_port

TOKENS: dict[str, Any] = {
    "ouh-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "rh-clinician": {"holder": "hovedstaden", "roles": ["clinician"]},
    "ngc-operator": {"holder": "ngc", "roles": ["operator"]},
}


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """Syddanmark's portal, its hub's access service at a port where nothing answers."""
    store = SpokeStore(f"sqlite:///{tmp_path / 'spoke.sqlite'}", feed_topic(Region.SYDDANMARK))
    app = make_web([])
    hub = HubAccess(f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    install_portal(app, store, Region.SYDDANMARK, Tokens({token_hash(t): e for t, e in TOKENS.items()}), hub)
    async with TestClient(TestServer(app)) as client:
        yield client
    await hub.close()
    store.dispose()


async def signed_in(client: TestClient[Any, Any], token: str = "ouh-clinician") -> None:
    response = await client.post("/portal/login", data={"token": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/"


async def test_a_visitor_without_a_session_is_sent_to_sign_in(portal: TestClient[Any, Any]) -> None:
    for path in ("/portal/", "/portal/requests", "/portal/audit", "/portal/requests/new"):
        response = await portal.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/portal/login", path
    portal.session.cookie_jar.update_cookies({SESSION_COOKIE: "forged"})
    response = await portal.get("/portal/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/login"


async def test_only_the_regions_own_tokens_sign_in(portal: TestClient[Any, Any]) -> None:
    unknown = await portal.post("/portal/login", data={"token": "nobody"}, allow_redirects=False)
    assert unknown.status == 401 and "invalid token" in await unknown.text()
    for other in ("rh-clinician", "ngc-operator"):
        refused = await portal.post("/portal/login", data={"token": other}, allow_redirects=False)
        assert refused.status == 403 and "own region" in await refused.text(), other
        assert SESSION_COOKIE not in refused.cookies
    assert (await portal.get("/portal/", allow_redirects=False)).status == 303


async def test_the_session_cookie_is_out_of_scripts_reach_and_secure_off_loopback(
    portal: TestClient[Any, Any],
) -> None:
    response = await portal.post("/portal/login", data={"token": "ouh-clinician"}, allow_redirects=False)
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/portal"
    assert not cookie["secure"]  # read on loopback over plain http
    remote = await portal.post(
        "/portal/login",
        data={"token": "ouh-clinician"},
        headers={"Host": "portal.syddanmark.example"},
        allow_redirects=False,
    )
    assert remote.cookies[SESSION_COOKIE]["secure"]


async def test_every_page_says_what_a_browser_must_not_do_with_it(portal: TestClient[Any, Any]) -> None:
    response = await portal.get("/portal/login")
    assert response.status == 200
    policy = response.headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in await response.text()


async def test_a_form_not_made_by_this_session_changes_nothing(portal: TestClient[Any, Any]) -> None:
    await signed_in(portal)
    for path in ("/portal/requests", "/portal/logout", f"/portal/requests/{'ab' * 16}/decision"):
        response = await portal.post(path, data={"grant": "yes", "csrf": "0" * 64}, allow_redirects=False)
        assert response.status == 403, path
        assert "not this session" in await response.text()
    assert (await portal.get("/portal/", allow_redirects=False)).status == 200  # still signed in


async def test_a_form_sent_from_another_site_signs_no_one_in(portal: TestClient[Any, Any]) -> None:
    for origin in ("https://evil.example", "null"):
        response = await portal.post(
            "/portal/login",
            data={"token": "ouh-clinician"},
            headers={"Origin": origin},
            allow_redirects=False,
        )
        assert response.status == 403 and SESSION_COOKIE not in response.cookies, origin
    own = f"http://{portal.server.host}:{portal.server.port}"
    response = await portal.post(
        "/portal/login", data={"token": "ouh-clinician"}, headers={"Origin": own}, allow_redirects=False
    )
    assert response.status == 303 and SESSION_COOKIE in response.cookies


async def test_the_language_switch_never_leads_off_the_portal(portal: TestClient[Any, Any]) -> None:
    for back in ("https://evil.example/", "//evil.example/portal/", "/portal/\\\\evil.example", "/elsewhere"):
        response = await portal.get(
            "/portal/language", params={"to": "en", "back": back}, allow_redirects=False
        )
        assert response.status == 303 and response.headers["Location"] == "/portal/", back
    kept = await portal.get(
        "/portal/language", params={"to": "en", "back": "/portal/requests"}, allow_redirects=False
    )
    assert kept.headers["Location"] == "/portal/requests"
    page = await portal.get("/portal/login")
    assert "<html lang=en>" in await page.text()


async def test_a_mistyped_range_is_refused_before_the_hub_is_asked(portal: TestClient[Any, Any]) -> None:
    await signed_in(portal)
    form = {
        "csrf": pages.csrf_token("ouh-clinician"),
        "owner": "hovedstaden",
        "samples": "RH-1",
        "department": "OUH",
        "wants": "harmonised-cram",
        "ranges": "chr17:43044294",
        "purpose": "patient-treatment",
        "case_reference": "OUH-1",
        "urgency": "routine",
    }
    response = await portal.post("/portal/requests", data=form)
    text = await response.text()
    assert response.status == 422 and "is not a genomic range" in text
    assert "value='OUH'" in text  # the form comes back as it was filled


async def test_a_hub_away_is_said_so(portal: TestClient[Any, Any]) -> None:
    await signed_in(portal)
    response = await portal.get("/portal/requests")
    assert response.status == 503 and "svarer ikke" in await response.text()


async def test_a_spoke_without_the_hub_says_so(tmp_path: Path) -> None:
    store = SpokeStore(f"sqlite:///{tmp_path / 'alone.sqlite'}", feed_topic(Region.SYDDANMARK))
    app = make_web([])
    install_portal(app, store, Region.SYDDANMARK, Tokens({token_hash(t): e for t, e in TOKENS.items()}), None)
    async with TestClient(TestServer(app)) as client:
        await signed_in(client)
        assert (await client.get("/portal/", allow_redirects=False)).status == 200  # the mirror alone
        response = await client.get("/portal/requests")
        assert response.status == 503 and "ikke forbundet" in await response.text()
    store.dispose()


async def test_a_request_id_that_is_none_is_not_passed_on(portal: TestClient[Any, Any]) -> None:
    await signed_in(portal)
    for path in ("/portal/requests/..%2F..%2Fv1%2Faudit", "/portal/requests/ABC"):
        assert (await portal.get(path, allow_redirects=False)).status == 404, path


def test_the_request_form_becomes_the_access_request() -> None:
    filled: dict[str, Any] = {
        "owner": "hovedstaden",
        "samples": "RH-1, RH-2;RH-3",
        "department": "OUH",
        "ranges": "chr17:10-20\nchrX\n",
        "case_reference": "OUH-1",
        "urgency": "urgent",
        "wants": ["harmonised-cram"],
    }
    body = request_body(filled, "patient-treatment")
    assert body["samples"] == ["RH-1", "RH-2", "RH-3"] and "patient" not in body
    assert body["genomic_ranges"] == [
        {"reference_name": "chr17", "start": 10, "end": 20},
        {"reference_name": "chrX"},
    ]
    with pytest.raises(ValueError, match="what the working copy holds"):
        request_body({**filled, "wants": ["everything"]}, "patient-treatment")


def test_what_the_hub_or_the_feed_says_is_shown_as_text() -> None:
    hostile = "<script>alert(1)</script>"
    viewer = pages.Viewer(
        Principal("syddanmark", frozenset({Role.DATA_STEWARD})), "t", "da", Region.SYDDANMARK
    )
    view = {
        "request": {
            "request_id": "ab" * 16,
            "owner": "syddanmark",
            "requester": {"region": "hovedstaden", "department": hostile},
            "samples": [{"region": "syddanmark", "sample_id": "S1"}],
            "wants": ["harmonised-cram"],
            "genomic_ranges": [],
            "case_reference": hostile,
            "urgency": "routine",
            "requested_at": datetime(2026, 12, 6, 12, 0, tzinfo=UTC).isoformat(),
        },
        "standing": "pending",
    }
    html = pages.page(
        "x",
        pages.request_detail(viewer, view, None, hostile),
        lang="da",
        spoke=Region.SYDDANMARK,
        here="/portal/",
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Giv adgang" in html  # the owner's steward decides a pending request
    entries = [
        {
            "seq": 1,
            "at": "2026-12-06T12:00:00+00:00",
            "actor": hostile,
            "action": "request",
            "request_id": None,
            "case_reference": hostile,
            "concerns": [hostile],
            "detail": {hostile: hostile},
        }
    ]
    assert "<script>" not in "".join(pages.audit_body(viewer, entries))
