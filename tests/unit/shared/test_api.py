"""One declaration per route (``shared.api``): the router entry and the OpenAPI operation are
made from it, and its parameters are checked from their models into the one error body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from shared.api import (
    OPENAPI_PATH,
    Api,
    InvalidParameters,
    answer,
    parse_parameters,
    path_of,
    query_of,
    route,
)
from shared.auth import Tokens, token_hash
from shared.events import Region
from shared.http import make_web
from tests.support import assert_error_body, get_json, serve_app

TOKEN = "a-region-token"


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region | None = Field(default=None, description="Only this region.")
    limit: int = Field(default=10, ge=1, le=100, description="Page size.")


class Named(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region = Field(description="The region.")


class Listed(BaseModel):
    region: str | None
    limit: int


class Example(Api):
    title = "example"
    description = "Routes declared once."

    @route(
        "GET",
        "/v1/things",
        operation_id="listThings",
        summary="Things.",
        query=Page,
        responses={200: answer("A page.", Listed)},
    )
    async def things(self, request: web.Request) -> web.Response:
        page = query_of(request, Page)
        listed = Listed(region=page.region.value if page.region else None, limit=page.limit)
        return web.json_response(text=listed.model_dump_json())

    @route(
        "GET",
        "/v1/regions/{region}",
        operation_id="getRegion",
        summary="One region.",
        path_parameters=Named,
        query_refused=400,
        responses={200: answer("The region.", {"type": "string"})},
    )
    async def region(self, request: web.Request) -> web.Response:
        return web.json_response(path_of(request, Named).region.value)

    @route(
        "GET",
        "/v1/open",
        operation_id="open",
        summary="Open to all.",
        public=True,
        responses={200: answer("Yes.")},
    )
    async def open(self, _: web.Request) -> web.Response:
        return web.json_response("open")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = make_web([])
    Example().install(app, Tokens({token_hash(TOKEN): "hovedstaden"}))
    with serve_app(app) as url:
        yield url


def test_the_document_is_made_from_the_declarations() -> None:
    doc = Example.document()
    assert set(doc["paths"]) == {"/v1/things", "/v1/regions/{region}", "/v1/open"}
    things = doc["paths"]["/v1/things"]["get"]
    assert things["operationId"] == "listThings"
    assert [(p["name"], p["in"], p["required"]) for p in things["parameters"]] == [
        ("region", "query", False),
        ("limit", "query", False),
    ]
    region, limit = things["parameters"]
    assert region["schema"] == {"type": "string", "enum": [r.value for r in Region]}
    assert region["description"] == "Only this region."
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    assert set(things["responses"]) == {"200", "401"}, "every route behind the token documents its 401"
    assert things["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Listed"
    }
    named = doc["paths"]["/v1/regions/{region}"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in named] == [("region", "path", True)]
    assert doc["paths"]["/v1/open"]["get"]["security"] == []
    assert "401" not in doc["paths"]["/v1/open"]["get"]["responses"]
    assert {"Listed", "ErrorBody", "FieldProblem"} <= set(doc["components"]["schemas"])


def test_the_served_document_is_the_generated_one(base: str) -> None:
    status, served = get_json(base + OPENAPI_PATH, None)
    assert status == 200 and served == json.loads(json.dumps(Example.document()))


def test_query_parameters_are_validated_from_their_model(base: str) -> None:
    assert get_json(base + "/v1/things?region=syddanmark&limit=5", TOKEN) == (
        200,
        {"region": "syddanmark", "limit": 5},
    )
    status, body = get_json(base + "/v1/things?regoin=syddanmark&limit=0&limit=2", TOKEN)
    assert status == 422
    doc = assert_error_body(json.dumps(body), 422)
    found = {(p["field"], p["message"]) for p in doc["problems"]}
    assert {("regoin", "unknown parameter"), ("limit", "given more than once")} <= found


def test_a_path_naming_nothing_is_refused_in_the_one_body(base: str) -> None:
    assert get_json(base + "/v1/regions/syddanmark", TOKEN) == (200, "syddanmark")
    status, body = get_json(base + "/v1/regions/atlantis", TOKEN)
    assert status == 404 and body["error"] == "no such region"
    assert [p["field"] for p in assert_error_body(json.dumps(body), 404)["problems"]] == ["region"]
    assert "atlantis" not in json.dumps(body), "the refused value is never quoted back"


def test_only_declared_public_routes_and_the_probes_are_open(base: str) -> None:
    assert get_json(base + "/v1/open", None)[0] == 200
    assert get_json(base + "/healthz", None)[0] == 200
    status, body = get_json(base + "/v1/things", None)
    assert status == 401
    assert_error_body(json.dumps(body), 401)


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4))
def test_unknown_parameters_are_each_named(values: dict[str, Any]) -> None:
    unknown = set(values) - {"region", "limit"}
    try:
        parse_parameters(Page, values)
    except InvalidParameters as exc:
        assert unknown <= {p.field for p in exc.problems}
    else:
        assert not unknown
