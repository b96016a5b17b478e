"""Billing's HTTP API, on the service's aiohttp application: the statements finance reads.

Every route needs a bearer token (``shared.auth``). A region reads the rate and its own
lines of a closed month; the national operator (``ngc``) reads everything. A month without
a statement is answered the same for every region, whatever has accrued in it so far.

    GET /v1/refunds                     the closed months' statements (ids and rates)
    GET /v1/refunds/{month}?format=F    one statement as JSON, CSV or HTML
    GET /openapi.json                   the OpenAPI 3.1 document (public, like the probes)
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.billing.months import parse_month
from services.billing.report import FORMATS, MEDIA_TYPES, NoStatement, render
from services.billing.store import BillingStore
from shared.auth import Tokens, bearer_auth, principal_of
from shared.http import ErrorBody, FieldProblem, http_error
from shared.openapi import parameter

OPENAPI_PATH = "/openapi.json"
QUERY = frozenset({"format"})


def _refuse_unknown(request: web.Request, known: frozenset[str]) -> None:
    """400 for an unknown or repeated query parameter: a misspelt ``format`` is not JSON."""
    problems = [
        FieldProblem(field=key, message="unknown parameter" if key not in known else "given more than once")
        for key in sorted(set(request.query))
        if key not in known or len(request.query.getall(key)) > 1
    ]
    if problems:
        raise http_error(400, "invalid query", problems=problems)


def install(app: web.Application, store: BillingStore, tokens: Tokens) -> None:
    """Add bearer authentication, the statements' routes and the OpenAPI document to ``app``."""
    app.middlewares.append(
        cast(Middleware, bearer_auth(tokens, ("/healthz", "/readyz", "/metrics", OPENAPI_PATH)))
    )
    spec = document()

    async def refunds(request: web.Request) -> web.Response:
        principal = principal_of(request)
        _refuse_unknown(request, QUERY)
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            raise http_error(
                400,
                "invalid query",
                problems=[FieldProblem(field="format", message=f"must be one of {', '.join(FORMATS)}")],
            )
        try:
            month = parse_month(request.match_info["month"])
        except ValueError:
            raise http_error(
                400,
                "invalid month",
                problems=[FieldProblem(field="month", message="write it YYYY-MM, e.g. 2026-01")],
            ) from None
        try:
            body = await asyncio.to_thread(render, store, month, fmt, principal.region)
        except NoStatement as exc:
            raise http_error(404, str(exc)) from None
        return web.Response(text=body, content_type=MEDIA_TYPES[fmt], charset="utf-8")

    async def statement_list(request: web.Request) -> web.Response:
        principal = principal_of(request)
        _refuse_unknown(request, frozenset())
        listed = [
            {"month": s.month, "statement_id": s.statement_id, "rate_dkk": s.rate_dkk}
            | ({"total_ore": s.total_ore} if principal.national else {})
            for s in await asyncio.to_thread(store.statements)
        ]
        return web.json_response({"statements": listed})

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/v1/refunds", statement_list)
    app.router.add_get("/v1/refunds/{month}", refunds)
    app.router.add_get(OPENAPI_PATH, openapi)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of billing's API, served at ``/openapi.json``."""
    schemas = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schemas.pop("$defs", {})
    statement_item = {
        "type": "object",
        "required": ["month", "statement_id", "rate_dkk"],
        "properties": {
            "month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
            "statement_id": {"type": "string"},
            "rate_dkk": {"type": "integer"},
            "total_ore": {"type": "integer", "description": "National operator only."},
        },
    }
    errors = {
        "401": _error("Missing or invalid bearer token."),
        "400": _error("An unknown or repeated query parameter, a format or month billing refuses."),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "genomhub billing",
            "version": "1.0.0",
            "description": "The Novo Nordisk Foundation refund statements of closed months. A region's token reads "
            "the rate and its own lines; the national operator's (ngc) reads all.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/refunds": {
                "get": {
                    "operationId": "listStatements",
                    "summary": "The closed months' statements.",
                    "responses": {
                        "200": {
                            "description": "Statements, oldest first.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["statements"],
                                        "properties": {
                                            "statements": {"type": "array", "items": statement_item}
                                        },
                                    }
                                }
                            },
                        },
                        **errors,
                    },
                }
            },
            "/v1/refunds/{month}": {
                "get": {
                    "operationId": "getStatement",
                    "summary": "A closed month's statement as the token may read it.",
                    "parameters": [
                        parameter(
                            "month",
                            {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
                            "The month, YYYY-MM.",
                            "path",
                        ),
                        parameter(
                            "format",
                            {"type": "string", "enum": list(FORMATS), "default": "json"},
                            "JSON and CSV with plain numbers, HTML with Danish amounts and charts.",
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "The statement.",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "text/csv": {"schema": {"type": "string"}},
                                "text/html": {"schema": {"type": "string"}},
                            },
                        },
                        "404": _error("The month is not closed: it has no statement (yet)."),
                        **errors,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**defs, "ErrorBody": schemas},
        },
    }
