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
from services.indexer.views import ErrorBody, ProblemDetail
from shared.auth import Tokens, bearer_auth, principal_of
from shared.events import Region

M = TypeVar("M", bound=BaseModel)
OPENAPI_PATH = "/openapi.json"


class NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _error(status: int, error: str, problems: list[dict[str, str]] | None = None) -> web.Response:
    body = ErrorBody(error=error, problems=[ProblemDetail(**p) for p in problems or []])
    return _json(body, status)


def _query(request: web.Request, model: type[M]) -> M:
    params = {key: request.query[key] for key in request.query}
    repeated = {key for key in params if len(request.query.getall(key)) > 1}
    return parse_query(model, params, repeated)


def _scope(request: web.Request, named: Region | None) -> Region | None:
    """The region the caller is confined to; 403 if it names another one."""
    principal = principal_of(request)
    own = principal.region
    if own is not None and named is not None and named != own:
        raise web.HTTPForbidden(
            text=ErrorBody(error=f"{principal.name} may not read {named.value}").model_dump_json(),
            content_type="application/json",
        )
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
        named, sample_id = request.match_info["region"], request.match_info["sample_id"]
        try:
            region = Region(named)
        except ValueError:
            return _error(404, f"no region {named!r}; the regions are {', '.join(r.value for r in Region)}")
        found = await asyncio.to_thread(catalogue.sample, region, sample_id, _scope(request, None))
        return _json(found) if found else _error(404, f"no sample {sample_id!r} in {region.value}")

    async def get_submission(request: web.Request) -> web.Response:
        try:
            _query(request, NoParameters)
        except InvalidQuery as exc:
            return _error(422, "invalid query", exc.problems)
        submission_id = request.match_info["submission_id"]
        found = await asyncio.to_thread(catalogue.submission, submission_id, _scope(request, None))
        return _json(found) if found else _error(404, f"no submission {submission_id!r}")

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
