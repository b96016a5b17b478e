"""The catalogue's read-only HTTP API, on the indexer's aiohttp application.

Every route needs a bearer token (``shared.auth``). A region's token is confined to its own
region: listing and statistics are filtered to it, and naming another region is refused
(403). A single sample or submission of another region answers 404, as if absent, so that
a region cannot probe which pseudonyms other regions hold.

A sample is named by its region and its pseudonym (``/v1/samples/{region}/{sample_id}``):
pseudonyms are the regions' own, so a pseudonym alone names no one sample.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar, cast

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict

from services.indexer.filters import InvalidQuery, SampleFilters, StatsFilters, parse_query
from services.indexer.openapi import document
from services.indexer.store import Catalogue
from shared.auth import Tokens, bearer_auth, principal_of
from shared.events import Region
from shared.http import FieldProblem, error_response, http_error

M = TypeVar("M", bound=BaseModel)
OPENAPI_PATH = "/openapi.json"


class NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _error(status: int, error: str, problems: list[dict[str, str]] | None = None) -> web.Response:
    """The shared error body; a refused query parameter is a problem's ``field``."""
    listed = [FieldProblem(field=p["parameter"], message=p["message"]) for p in problems or []]
    return error_response(status, error, problems=listed)


def _path_id(request: web.Request, name: str) -> str | None:
    """The id in the path, or None if no record can have it (control characters, NUL):
    answered 404 like any id not found, and never handed to the database, where PostgreSQL
    refuses NUL and SQLite would match on the part before it."""
    value = request.match_info[name]
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return value


def _query(request: web.Request, model: type[M]) -> M:
    params = {key: request.query[key] for key in request.query}
    repeated = {key for key in params if len(request.query.getall(key)) > 1}
    return parse_query(model, params, repeated)


def _scope(request: web.Request, named: Region | None) -> Region | None:
    """The region the caller is confined to; 403 if it names another one."""
    principal = principal_of(request)
    own = principal.region
    if own is not None and named is not None and named != own:
        raise http_error(403, f"{principal.name} may not read {named.value}")
    return own


def install(app: web.Application, catalogue: Catalogue, tokens: Tokens) -> None:
    """Add bearer authentication, the catalogue's routes and its OpenAPI document to ``app``.

    The document is public, like the probes: it describes the API and reveals no data.
    """
    public = ("/healthz", "/readyz", "/metrics", OPENAPI_PATH)
    app.middlewares.append(cast(Middleware, bearer_auth(tokens, public)))
    spec = document()

    async def list_samples(request: web.Request) -> web.Response:
        try:
            filters = _query(request, SampleFilters)
        except InvalidQuery as exc:
            return _error(422, "invalid query", exc.problems)
        scope = _scope(request, filters.region)
        return _json(await asyncio.to_thread(catalogue.search, filters, scope))

    async def get_sample(request: web.Request) -> web.Response:
        try:
            _query(request, NoParameters)
        except InvalidQuery as exc:
            return _error(422, "invalid query", exc.problems)
        try:
            region = Region(request.match_info["region"])
        except ValueError:
            # The regions are public, so naming them tells nothing; the path's own text is
            # never quoted back (it may be a CPR number).
            regions = ", ".join(r.value for r in Region)
            return _error(404, "no such region", [{"parameter": "region", "message": f"one of {regions}"}])
        sample_id = _path_id(request, "sample_id")
        scope = _scope(request, None)
        found = await asyncio.to_thread(catalogue.sample, region, sample_id, scope) if sample_id else None
        return _json(found) if found else _error(404, "no such sample")

    async def get_submission(request: web.Request) -> web.Response:
        try:
            _query(request, NoParameters)
        except InvalidQuery as exc:
            return _error(422, "invalid query", exc.problems)
        submission_id = _path_id(request, "submission_id")
        scope = _scope(request, None)
        found = await asyncio.to_thread(catalogue.submission, submission_id, scope) if submission_id else None
        return _json(found) if found else _error(404, "no such submission")

    async def get_stats(request: web.Request) -> web.Response:
        try:
            filters = _query(request, StatsFilters)
        except InvalidQuery as exc:
            return _error(422, "invalid query", exc.problems)
        scope = _scope(request, filters.region)
        return _json(await asyncio.to_thread(catalogue.stats, scope or filters.region))

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/v1/samples", list_samples)
    app.router.add_get("/v1/samples/{region}/{sample_id}", get_sample)
    app.router.add_get("/v1/submissions/{submission_id}", get_submission)
    app.router.add_get("/v1/stats", get_stats)
    app.router.add_get(OPENAPI_PATH, openapi)
