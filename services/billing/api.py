"""Billing's HTTP API, on the service's aiohttp application: the statements finance reads.

Every route needs a bearer token (``shared.auth``). A region reads the rate and its own
lines of a closed month; the national operator (``ngc``) reads everything. A month without
a statement is answered the same for every region, whatever has accrued in it so far.

    GET /v1/refunds                     the closed months' statements (ids and rates)
    GET /v1/refunds/{month}?format=F    one statement as JSON, CSV or HTML
    GET /openapi.json                   the OpenAPI 3.1 document (public, like the probes)

The routes are declared once (``shared.api``), and the document is generated from them.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.billing.months import parse_month
from services.billing.report import MEDIA_TYPES, Format, NoStatement, render
from services.billing.store import BillingStore
from shared.api import OPENAPI_PATH, Answer, Api, answer, path_of, query_of, refusal, route
from shared.auth import Tokens, principal_of
from shared.http import http_error

__all__ = ["OPENAPI_PATH", "BillingApi", "document", "install"]
QUERY_REFUSED = refusal("An unknown or repeated query parameter, a format or month billing refuses.")


class NoParameters(BaseModel):
    """The query of a route that takes none: any parameter is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class StatementQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format = Field(
        default="json", description="JSON and CSV with plain numbers, HTML with Danish amounts and charts."
    )


class StatementPath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    month: str = Field(
        description="The month, YYYY-MM.", json_schema_extra={"pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}
    )

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        try:
            return parse_month(value)
        except ValueError:  # its message quotes the value
            raise ValueError("write it YYYY-MM, e.g. 2026-01") from None


class StatementItem(BaseModel):
    """One closed month's statement, as the list names it."""

    month: str = Field(pattern="^[0-9]{4}-[0-9]{2}$")
    statement_id: str
    rate_dkk: int
    total_ore: int | None = Field(default=None, description="National operator only.")


class StatementList(BaseModel):
    statements: list[StatementItem]


class BillingApi(Api):
    """The statements' routes over one :class:`BillingStore`."""

    title = "genomhub billing"
    description = (
        "The Novo Nordisk Foundation refund statements of closed months. A region's token reads "
        "the rate and its own lines; the national operator's (ngc) reads all."
    )

    def __init__(self, store: BillingStore) -> None:
        self.store = store

    @route(
        "GET",
        "/v1/refunds",
        operation_id="listStatements",
        summary="The closed months' statements.",
        query=NoParameters,
        query_refused=400,
        responses={200: answer("Statements, oldest first.", StatementList), 400: QUERY_REFUSED},
    )
    async def statement_list(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        listed = [
            StatementItem(
                month=s.month,
                statement_id=s.statement_id,
                rate_dkk=s.rate_dkk,
                total_ore=s.total_ore if principal.national else None,
            )
            for s in await asyncio.to_thread(self.store.statements)
        ]
        return web.json_response(text=StatementList(statements=listed).model_dump_json(exclude_none=True))

    @route(
        "GET",
        "/v1/refunds/{month}",
        operation_id="getStatement",
        summary="A closed month's statement as the token may read it.",
        query=StatementQuery,
        query_refused=400,
        path_parameters=StatementPath,
        path_refused=400,
        responses={
            200: Answer(
                "The statement.",
                {
                    "application/json": {"type": "object"},
                    "text/csv": {"type": "string"},
                    "text/html": {"type": "string"},
                },
            ),
            400: QUERY_REFUSED,
            404: refusal("The month is not closed: it has no statement (yet)."),
        },
    )
    async def refunds(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        fmt = query_of(request, StatementQuery).format
        month = path_of(request, StatementPath).month
        try:
            body = await asyncio.to_thread(render, self.store, month, fmt, principal.region)
        except NoStatement as exc:
            raise http_error(404, str(exc)) from None
        return web.Response(text=body, content_type=MEDIA_TYPES[fmt], charset="utf-8")


def install(app: web.Application, store: BillingStore, tokens: Tokens) -> None:
    """The statements' routes, their token check and their document on ``app``."""
    BillingApi(store).install(app, tokens)


document = BillingApi.document
