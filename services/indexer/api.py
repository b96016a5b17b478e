"""The catalogue's read-only HTTP API, on the indexer's aiohttp application.

Every route needs a bearer token (``shared.auth``). A region's token is confined to its own
region: listing and statistics are filtered to it, and naming another region is refused
(403). A single sample or submission of another region answers 404, as if absent, so that
a region cannot probe which pseudonyms other regions hold.

A sample is named by its region and its pseudonym (``/v1/samples/{region}/{sample_id}``):
pseudonyms are the regions' own, so a pseudonym alone names no one sample.

The routes are declared once (``shared.api``); the OpenAPI document at ``/openapi.json`` is
generated from the same declarations and the models the handlers validate and serialise.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.indexer.filters import SampleFilters, StatsFilters
from services.indexer.store import Catalogue
from services.indexer.views import SampleDetail, SamplePage, Stats, SubmissionDetail
from shared.api import Api, answer, path_of, query_of, refusal, route
from shared.auth import Tokens, principal_of
from shared.events import Region
from shared.http import http_error

QUERY_REFUSED = refusal("An unknown parameter, or a filter value the catalogue refuses.")
NOT_FOUND = refusal("No such record visible to this token.")
FORBIDDEN = refusal("The token's region may not read the named region.")


class NoParameters(BaseModel):
    """The query of a route that takes none: any parameter is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


def _record_id(value: str) -> str:
    """An id no record can have (control characters, NUL) is answered 404 like any id not
    found, and never handed to the database, where PostgreSQL refuses NUL and SQLite would
    match on the part before it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("no record has such an id")
    return value


class SamplePath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region = Field(description="The region that reported the sample.")
    sample_id: str = Field(min_length=1, description="The region's sample pseudonym.")

    @field_validator("sample_id")
    @classmethod
    def _possible(cls, value: str) -> str:
        return _record_id(value)


class SubmissionPath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    submission_id: str = Field(min_length=1, description="Submission id.")

    @field_validator("submission_id")
    @classmethod
    def _possible(cls, value: str) -> str:
        return _record_id(value)


def _scope(request: web.Request, named: Region | None) -> Region | None:
    """The region the caller is confined to; 403 if it names another one."""
    principal = principal_of(request)
    own = principal.region
    if own is not None and named is not None and named != own:
        raise http_error(403, f"{principal.name} may not read {named.value}")
    return own


def _json(model: BaseModel | None, missing: str = "no such record") -> web.Response:
    """``model`` as the answer's body; 404 ``missing`` when there is none to show."""
    if model is None:
        raise http_error(404, missing)
    return web.json_response(text=model.model_dump_json())


class CatalogueApi(Api):
    """The catalogue's routes over one :class:`Catalogue`."""

    title = "genomhub national catalogue"
    description = (
        "What the Danish National Genome Database holds: metadata only. A region's token "
        "reads its own region's records; the national operator's (ngc) reads all."
    )

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    @route(
        "GET",
        "/v1/samples",
        operation_id="listSamples",
        summary="Samples, newest received first, keyset-paginated.",
        query=SampleFilters,
        responses={200: answer("A page of samples.", SamplePage), 403: FORBIDDEN, 422: QUERY_REFUSED},
    )
    async def list_samples(self, request: web.Request) -> web.Response:
        filters = query_of(request, SampleFilters)
        scope = _scope(request, filters.region)
        return _json(await asyncio.to_thread(self.catalogue.search, filters, scope))

    @route(
        "GET",
        "/v1/samples/{region}/{sample_id}",
        operation_id="getSample",
        summary="A sample with its files and submission history. A sample is its region's: "
        "two regions may hold samples of the same pseudonym, and they are two samples.",
        query=NoParameters,
        path_parameters=SamplePath,
        responses={200: answer("The sample.", SampleDetail), 404: NOT_FOUND, 422: QUERY_REFUSED},
    )
    async def get_sample(self, request: web.Request) -> web.Response:
        where = path_of(request, SamplePath)
        found = await asyncio.to_thread(
            self.catalogue.sample, where.region, where.sample_id, _scope(request, None)
        )
        return _json(found, "no such sample")

    @route(
        "GET",
        "/v1/submissions/{submission_id}",
        operation_id="getSubmission",
        summary="A submission and its timeline of events, with their trace ids.",
        query=NoParameters,
        path_parameters=SubmissionPath,
        responses={200: answer("The submission.", SubmissionDetail), 404: NOT_FOUND, 422: QUERY_REFUSED},
    )
    async def get_submission(self, request: web.Request) -> web.Response:
        where = path_of(request, SubmissionPath)
        found = await asyncio.to_thread(self.catalogue.submission, where.submission_id, _scope(request, None))
        return _json(found, "no such submission")

    @route(
        "GET",
        "/v1/stats",
        operation_id="getStats",
        summary="Samples and genome equivalents per region, month of receipt and status.",
        query=StatsFilters,
        responses={200: answer("The statistics.", Stats), 403: FORBIDDEN, 422: QUERY_REFUSED},
    )
    async def get_stats(self, request: web.Request) -> web.Response:
        filters = query_of(request, StatsFilters)
        scope = _scope(request, filters.region)
        return _json(await asyncio.to_thread(self.catalogue.stats, scope or filters.region))


def install(app: web.Application, catalogue: Catalogue, tokens: Tokens) -> None:
    """The catalogue's routes, their token check and their document on ``app``."""
    CatalogueApi(catalogue).install(app, tokens)


document = CatalogueApi.document
