"""The catalogue's HTTP API on SQLite and PostgreSQL: tokens, scopes, validation, and the
OpenAPI document checked against the running server with schemathesis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis

from services.indexer.api import document, install
from services.indexer.store import Catalogue
from shared import telemetry
from shared.auth import Tokens, token_hash
from shared.http import make_web
from tests.conformance import call_and_validate, generated
from tests.ids import issued_id
from tests.support import assert_error_body, get_json, raw_http, serve_app
from tests.unit.indexer.factories import event, harmonised, submission, validated

TOKENS = {"ngc": "national-operator-token", "hovedstaden": "capital-token", "syddanmark": "south-token"}


@dataclass
class Api:
    base: str
    catalogue: Catalogue

    def get(self, path: str, holder: str | None = "ngc") -> tuple[int, Any]:
        return get_json(self.base + path, None if holder is None else TOKENS[holder])


def serve(catalogue: Catalogue) -> Iterator[str]:
    """The API on a real socket, its own event loop in a thread, as in the service."""
    app = make_web([])
    install(app, catalogue, Tokens({token_hash(v): k for k, v in TOKENS.items()}))
    with serve_app(app) as base:
        yield base


@pytest.fixture
def api(catalogue: Catalogue) -> Iterator[Api]:
    catalogue.apply(event(harmonised(submission(1, region="hovedstaden")), 1))
    catalogue.apply(event(validated(submission(2, region="syddanmark"), "rejected"), 2))
    catalogue.apply(event(harmonised(submission(3, region="syddanmark", analysis="WES")), 3))
    for base in serve(catalogue):
        yield Api(base, catalogue)


def test_every_route_needs_a_token_but_the_document(api: Api) -> None:
    for path in (
        "/v1/samples",
        "/v1/samples/hovedstaden/S-0001",
        f"/v1/submissions/{issued_id('sub-0001')}",
        "/v1/stats",
    ):
        status, body = api.get(path, holder=None)
        assert status == 401, path
        assert "bearer" in body["error"]
    status, doc = api.get("/openapi.json", holder=None)
    assert status == 200 and doc["openapi"].startswith("3.")


def test_national_operator_sees_all_and_a_region_its_own(api: Api) -> None:
    _, everything = api.get("/v1/samples")
    assert {s["sample_id"] for s in everything["items"]} == {"S-0001", "S-0002", "S-0003"}
    _, south = api.get("/v1/samples", holder="syddanmark")
    assert {s["sample_id"] for s in south["items"]} == {"S-0002", "S-0003"}
    status, body = api.get("/v1/samples?region=hovedstaden", holder="syddanmark")
    assert status == 403 and "syddanmark may not read hovedstaden" in body["error"]
    assert api.get("/v1/samples/hovedstaden/S-0001", holder="syddanmark")[0] == 404
    assert api.get(f"/v1/submissions/{issued_id('sub-0001')}", holder="syddanmark")[0] == 404
    status, sample = api.get("/v1/samples/hovedstaden/S-0001", holder="hovedstaden")
    assert status == 200 and sample["status"] == "harmonised" and sample["region"] == "hovedstaden"
    # A pseudonym names a sample only with its region: hovedstaden's S-0001 is not syddanmark's.
    assert api.get("/v1/samples/syddanmark/S-0001", holder="syddanmark")[0] == 404
    assert api.get("/v1/samples/syddanmark/S-0001")[0] == 404
    _, stats = api.get("/v1/stats", holder="syddanmark")
    assert {r["region"] for r in stats["rows"]} == {"syddanmark"} and stats["samples"] == 2
    _, national = api.get("/v1/stats?region=hovedstaden")
    assert national["samples"] == 1


def test_two_regions_samples_of_one_pseudonym_are_each_their_regions(api: Api) -> None:
    """syddanmark reports S-0001 too: hovedstaden keeps its own, each region sees its own."""
    api.catalogue.apply(event(harmonised(submission(9, region="syddanmark", sample="S-0001")), 9))
    for region in ("hovedstaden", "syddanmark"):
        status, sample = api.get(f"/v1/samples/{region}/S-0001", holder=region)
        assert status == 200 and sample["region"] == region, (region, sample)
        _, own = api.get("/v1/samples", holder=region)
        assert ("S-0001", region) in {(s["sample_id"], s["region"]) for s in own["items"]}
    assert api.get("/v1/samples/hovedstaden/S-0001")[1]["submission_id"] == issued_id("sub-0001")
    assert api.get("/v1/samples/syddanmark/S-0001")[1]["submission_id"] == issued_id("sub-0009")
    _, everything = api.get("/v1/samples")
    assert [(s["region"], s["sample_id"]) for s in everything["items"]].count(("hovedstaden", "S-0001")) == 1
    assert len(everything["items"]) == 4


def test_an_unknown_region_in_a_sample_path_is_404_naming_the_regions(api: Api) -> None:
    status, body = api.get("/v1/samples/atlantis/S-0001")
    assert status == 404 and body["error"] == "no such region", body
    (problem,) = body["problems"]
    assert problem["field"] == "region" and "hovedstaden" in problem["message"]
    assert "atlantis" not in json.dumps(body)


def test_rejections_are_visible_to_their_uploaders(api: Api) -> None:
    status, sample = api.get("/v1/samples/syddanmark/S-0002", holder="syddanmark")
    assert status == 200 and sample["status"] == "rejected" and sample["accepted"] is False
    problems = [p for f in sample["catalogue_files"] for p in f["problems"]]
    assert problems[0]["code"] == "fastq.truncated"
    status, sub = api.get(f"/v1/submissions/{issued_id('sub-0002')}", holder="syddanmark")
    assert status == 200
    assert [(t["type"], t["summary"]) for t in sub["timeline"]] == [("validated", "QC rejected")]
    assert len(sub["timeline"][0]["trace_id"]) == 32


def test_metadata_only(api: Api) -> None:
    for path in ("/v1/samples/hovedstaden/S-0001", "/v1/samples", f"/v1/submissions/{issued_id('sub-0001')}"):
        _, body = api.get(path)
        text = json.dumps(body)
        assert "s3://" not in text and "secret" not in text and "Signature" not in text and "url" not in text


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("regoin=hovedstaden", "regoin"),
        ("status=lost", "status"),
        ("analysis=wgs", "analysis"),
        ("received_from=01-02-2026", "received_from"),
        ("received_from=2026-02-02&received_to=2026-02-01", "received_to"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("q=x", "q"),
        ("cursor=bm9wZQ", "cursor"),
        ("status=rejected&status=harmonised", "status"),
    ],
)
def test_bad_filters_are_422_naming_the_parameter(api: Api, query: str, parameter: str) -> None:
    status, body = api.get(f"/v1/samples?{query}")
    assert status == 422, body
    assert parameter in [p["field"] for p in body["problems"]]


def test_unknown_parameters_are_refused_everywhere(api: Api) -> None:
    for path in (
        "/v1/samples/hovedstaden/S-0001?x=1",
        f"/v1/submissions/{issued_id('sub-0001')}?x=1",
        "/v1/stats?month=2026-01",
    ):
        status, body = api.get(path)
        assert status == 422, path
        assert body["problems"][0]["message"] == "unknown parameter"


def test_pages_follow_the_cursor(api: Api) -> None:
    status, first = api.get("/v1/samples?limit=2")
    assert status == 200 and len(first["items"]) == 2 and first["next_cursor"]
    _, second = api.get(f"/v1/samples?limit=2&cursor={first['next_cursor']}")
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    ids = [s["sample_id"] for s in first["items"] + second["items"]]
    assert ids == ["S-0003", "S-0002", "S-0001"]


schema = schemathesis.openapi.from_dict(document())


@pytest.mark.parametrize("holder", ["ngc", "syddanmark"])
@schema.parametrize()
@generated(max_examples=12)
def test_api_conforms_to_its_openapi_document(case: Any, holder: str, api: Api) -> None:
    """Generated requests (valid and invalid) get documented statuses and conforming bodies.

    ``positive_data_acceptance`` is left out because two rules cannot be put in OpenAPI: a
    cursor is any base64url string only in form (only the API's own cursors are accepted),
    and ``received_to`` must not precede ``received_from``; both are answered 422, as documented.
    """
    from schemathesis.checks import positive_data_acceptance

    call_and_validate(case, api.base, TOKENS[holder], excluded_checks=[positive_data_acceptance])


def test_served_document_is_the_one_tested(api: Api) -> None:
    _, served = api.get("/openapi.json", holder=None)
    assert served == json.loads(json.dumps(document()))


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("received_from=0001-01-01", "received_from"),
        ("received_to=9999-12-31", "received_to"),
        ("received_from=1899-12-31", "received_from"),
        ("received_to=3000-01-01", "received_to"),
        ("q=S-%00x", "q"),
        ("q=%00%00", "q"),
        ("q=S-0%0A", "q"),
        ("cursor=WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwgIngiXQ", "cursor"),  # year 1 at +05:00
        ("cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgIlMtXHUwMDAwIl0", "cursor"),  # a NUL in the id
    ],
)
def test_filters_that_made_500s_or_matched_a_prefix_are_422(api: Api, query: str, parameter: str) -> None:
    status, body = api.get(f"/v1/samples?{query}")
    assert status == 422, body
    assert_error_body(json.dumps(body), 422)
    assert [p["field"] for p in body["problems"]] == [parameter]


def sample_path(sample_id: str, region: str = "hovedstaden") -> str:
    """The path of one sample, from the document's ``getSample`` (whatever its parameters)."""
    template = next(
        p for p, ops in document()["paths"].items() if ops.get("get", {}).get("operationId") == "getSample"
    )
    return str(template).format(region=region, sample_id=sample_id)


def test_ids_no_record_can_have_are_404_and_never_queried(api: Api) -> None:
    for path in (
        sample_path("S-0001%00"),
        sample_path("S-%00"),
        f"/v1/submissions/{issued_id('sub-0001')}%00x",
    ):
        status, body = api.get(path)
        assert status == 404, (path, body)
        assert_error_body(json.dumps(body), 404)


def test_another_regions_record_and_an_absent_one_are_answered_alike(api: Api) -> None:
    for foreign, absent in (
        (sample_path("S-0001"), sample_path("S-9999")),
        (f"/v1/submissions/{issued_id('sub-0001')}", f"/v1/submissions/{issued_id('sub-9999')}"),
    ):
        assert api.get(foreign, holder="syddanmark") == api.get(absent, holder="syddanmark")


def test_aiohttps_own_answers_and_the_parser_are_the_one_body_and_quote_no_token(
    api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    telemetry.setup("indexer-test")
    port = int(api.base.rsplit(":", 1)[1])
    token = TOKENS["hovedstaden"]
    for request in (
        f"GET /v1/samples HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}{'A' * 9000}\r\n\r\n".encode(),
        f"GET /v1/samples HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\x7f\x01\r\n\r\n".encode(),
        f"GET /v1/samples HTTP/1.1\r\nHost: a\r\nCookie: session={token}\x01\r\n\r\n".encode(),
        b"GET /v1/samples HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ):
        status, headers, body = raw_http(port, request)
        assert status == 400 and headers["content-type"].startswith("application/json"), body
        assert_error_body(body, 400)
        assert token.encode() not in body
    status, _, body = raw_http(
        port, f"DELETE /v1/samples HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    assert status == 405
    assert_error_body(body, 405)
    status, _, body = raw_http(
        port, f"GET /v2/nothing HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    assert status == 404
    assert_error_body(body, 404)
    status, _, body = raw_http(
        port,
        f"GET {sample_path('0703851234')} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\r\n".encode(),
    )
    assert status == 404 and b"0703851234" not in body
    logged = capfd.readouterr()
    text = logged.out + logged.err
    assert "malformed request refused" in text and '"http request"' in text
    assert token not in text and "0703851234" not in text
