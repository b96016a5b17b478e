"""Finance outputs: CSV, JSON and HTML from the CLI and over HTTP, and who sees what."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from services.billing.accrual import accrual_of
from services.billing.report import render
from services.billing.store import BillingStore
from services.cli import main
from shared.auth import token_hash
from shared.events import Region
from tests.unit.billing.billing_factories import indexed

FEB = datetime(2026, 2, 10, tzinfo=UTC)


@pytest.fixture
def billing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    monkeypatch.setenv("GENOMHUB_BILLING_DATABASE_URL", url)
    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENOMHUB_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    # the service is built but never reaches a broker; it only needs to know whose it is
    monkeypatch.setenv("GENOMHUB_KAFKA_USERNAME", "genomhub-billing")
    monkeypatch.setenv("GENOMHUB_KAFKA_PASSWORD", "unused")
    monkeypatch.setenv(
        "GENOMHUB_TOKENS",
        json.dumps({token_hash("ngc-token"): "ngc", token_hash("south-token"): "syddanmark"}),
    )
    yield url


@pytest.fixture
def closed_january(billing_env: str) -> BillingStore:
    store = BillingStore(billing_env)
    store.add_to_grant(532_281_00, by="finance", at=FEB)
    store.add_to_grant(1_000_00, by="finance", at=FEB, note="top-up")
    split = [
        (Region.HOVEDSTADEN, "Rigshospitalet", 1000),
        (Region.SYDDANMARK, "OUH", 600),
        (Region.SYDDANMARK, "Vejle", 416),
    ]
    n = 0
    for region, department, count in split:
        for _ in range(count):
            accrual = accrual_of(indexed(f"S{n}", region=region, department=department), f"e{n}")
            assert accrual is not None
            store.accrue(accrual)
            n += 1
    late = accrual_of(indexed("OPEN1", received_at=datetime(2026, 2, 5, tzinfo=UTC), ge="3"), "o1")
    assert late is not None
    store.add_to_grant(1, by="finance", at=FEB)  # one øre
    store.close("2026-01", standard_rate_dkk=300, now=FEB, by="finance")
    store.accrue(late)
    return store


def test_csv_is_plain_and_adds_up(closed_january: BillingStore) -> None:
    rows = list(csv.DictReader(io.StringIO(render(closed_january, "2026-01", "csv", None))))
    total = next(r for r in rows if r["level"] == "total")
    assert total["rate_dkk"] == "264"
    assert sum(int(r["amount_ore"]) for r in rows if r["level"] == "line") == int(total["amount_ore"])
    assert sum(int(r["amount_ore"]) for r in rows if r["level"] == "region") == int(total["amount_ore"])
    south = next(r for r in rows if r["level"] == "region" and r["region"] == "syddanmark")
    assert south["amount_dkk"] == "268224.00" and south["genome_equivalents"] == "1016.000000"
    # balance 532,281.00 + 1,000.00 + 0.01 = 533,281.01 -> floor(533281.01 / 2016) = 264
    assert total["balance_before_dkk"] == "533281.01" and total["balance_after_dkk"] == "1057.01"


def test_region_sees_only_its_own_lines(closed_january: BillingStore) -> None:
    doc = json.loads(render(closed_january, "2026-01", "json", Region.SYDDANMARK))
    assert {r["region"] for r in doc["regions"]} == {"syddanmark"}
    assert {ln["department"] for ln in doc["lines"]} == {"OUH", "Vejle"}
    assert "balance_before_ore" not in doc and "total_ore" not in doc
    rows = list(csv.DictReader(io.StringIO(render(closed_january, "2026-01", "csv", Region.SYDDANMARK))))
    assert {r["region"] for r in rows} == {"syddanmark"} and "total" not in {r["level"] for r in rows}


def test_html_has_danish_amounts_and_server_side_charts(closed_january: BillingStore) -> None:
    page = render(closed_january, "2026-01", "html", None)
    assert "532.224,00 kr." in page and "533.281,01 kr." in page and "1.057,01 kr." in page
    assert "<script" not in page.lower()
    charts = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(charts) == 2
    for chart in charts:  # well-formed SVG, drawn on the server
        assert ElementTree.fromstring(chart).tag == "{http://www.w3.org/2000/svg}svg"
    assert "Genomækvivalenter pr. region og måned" in page and "Bevillingens saldo over tid" in page
    assert "feb. 2026 (åben)" in page  # the open month is charted from its accruals
    assert re.search(r"<title>januar 2026, Region Hovedstaden: 1\.000,000000 genomækvivalenter</title>", page)
    regional = render(closed_january, "2026-01", "html", Region.HOVEDSTADEN)
    assert regional.count("<svg") == 1 and "Syddanmark" not in regional and "533.281,01" not in regional


def test_refunds_command(closed_january: BillingStore, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["refunds", "--month", "2026-01", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total_ore"] == 532_224_00
    out = tmp_path / "jan.html"
    assert (
        runner.invoke(
            main, ["refunds", "--month", "2026-01", "--format", "html", "--output", str(out)]
        ).exit_code
        == 0
    )
    assert "532.224,00 kr." in out.read_text()
    missing = runner.invoke(main, ["refunds", "--month", "2026-02", "--format", "csv"])
    assert (
        missing.exit_code != 0
        and "2026-02 is not closed" in missing.output
        and "3,00 genome" in missing.output
    )
    bad = runner.invoke(main, ["refunds", "--month", "2026-1"])
    assert bad.exit_code != 0 and "YYYY-MM" in bad.output


def test_grant_and_close_commands(billing_env: str) -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["billing", "grant", "add", "1000 EUR"])
    assert refused.exit_code != 0 and "held in DKK, not EUR" in refused.output
    added = runner.invoke(
        main, ["billing", "grant", "add", "532281", "--by", "kasserer", "--note", "minutes"]
    )
    assert added.exit_code == 0 and "opening #1" in added.output and "532.281,00 kr." in added.output
    shown = json.loads(runner.invoke(main, ["billing", "grant", "show", "--json"]).output)
    assert shown["balance_ore"] == 532_281_00 and shown["entries"][0]["recorded_by"] == "kasserer"
    future = runner.invoke(main, ["billing", "close", "2099-01"])
    assert future.exit_code != 0 and "has not ended yet" in future.output and "--force" in future.output


async def test_http_refunds_with_auth(closed_january: BillingStore) -> None:
    from services.billing.app import build

    service = build()
    async with TestClient(TestServer(service.web)) as client:
        assert (await client.get("/v1/refunds/2026-01")).status == 401
        ngc = {"Authorization": "Bearer ngc-token"}
        south = {"Authorization": "Bearer south-token"}
        full = await client.get("/v1/refunds/2026-01", headers=ngc)
        assert full.status == 200 and (await full.json())["total_ore"] == 532_224_00
        csv_response = await client.get("/v1/refunds/2026-01?format=csv", headers=south)
        assert csv_response.content_type == "text/csv"
        assert {r["region"] for r in csv.DictReader(io.StringIO(await csv_response.text()))} == {"syddanmark"}
        html = await client.get("/v1/refunds/2026-01?format=html", headers=ngc)
        assert html.content_type == "text/html" and "532.224,00 kr." in await html.text()
        assert (await client.get("/v1/refunds/2026-02", headers=ngc)).status == 404
        assert (await client.get("/v1/refunds/2026-1", headers=ngc)).status == 400
        assert (await client.get("/v1/refunds/2026-01?format=pdf", headers=ngc)).status == 400
        listed = await (await client.get("/v1/refunds", headers=south)).json()
        assert listed["statements"][0]["month"] == "2026-01" and "total_ore" not in listed["statements"][0]
