"""A spoke's read API: the national catalogue as its region may see it, at the one verified
revision the spoke shows.

The region's own samples and those granted to it are records; every other region's are
summaries at Beacon's granularity (what the hub published, nothing more is here to show).
A spoke serves its region: the region's tokens and the national operator's (ngc) read it;
another region's token is refused (403), since it has a spoke of its own. Every answer names
the revision it is of, so a reader can tell how fresh it is.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.indexer.api import NOT_FOUND, QUERY_REFUSED, NoParameters, SamplePath
from services.indexer.filters import StatsFilters
from services.indexer.views import Stats, StatsRow
from services.spoke.portal import PATHS as PORTAL_PATHS
from services.spoke.search import SampleQuery, Search
from services.spoke.store import Shown, SpokeStore
from shared.api import Api, answer, path_of, query_of, refusal, route
from shared.auth import Tokens, principal_of
from shared.events import Region, SampleStatus, sample_key
from shared.feed import Listed
from shared.http import http_error

FORBIDDEN = refusal("The token is another region's: it reads its own region's spoke.")
NOT_YET = refusal("The spoke has not shown a verified revision yet.")


class RevisionShown(BaseModel):
    """The revision a spoke shows: every answer is of it."""

    model_config = ConfigDict(frozen=True)

    region: Region = Field(description="The spoke's region.")
    revision: int = Field(description="The revision shown, proven whole against the hub's checkpoint.")
    upto: int = Field(description="The feed sequence number of the last entry it covers.")
    state_hash: str = Field(description="The state hash the spoke computed, equal to the checkpoint's.")
    applied_at: datetime = Field(description="When the spoke switched to it.")


class SampleList(BaseModel):
    model_config = ConfigDict(frozen=True)

    revision: RevisionShown
    samples: list[Listed]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class SampleShown(BaseModel):
    model_config = ConfigDict(frozen=True)

    revision: RevisionShown
    sample: Listed


class SpokeStats(Stats):
    """The hub's ``GET /v1/stats`` answer over what the spoke shows, naming its revision: the
    national overview at discovery's granularity (every region's samples by month of receipt
    and status), since that much every spoke holds of every region."""

    revision: RevisionShown


def statistics(samples: Iterable[Listed]) -> tuple[list[StatsRow], int, Decimal]:
    """Samples and genome equivalents per region, month of receipt and status, in that order."""
    groups: dict[tuple[Region, str, SampleStatus], list[Decimal]] = defaultdict(list)
    for sample in samples:
        groups[(sample.region, sample.received_month, sample.status)].append(sample.genome_equivalents)
    rows = [
        StatsRow(
            region=region, month=month, status=status, samples=len(ge), genome_equivalents=sum(ge, Decimal(0))
        )
        for (region, month, status), ge in sorted(groups.items())
    ]
    return rows, sum(r.samples for r in rows), sum((r.genome_equivalents for r in rows), Decimal(0))


class SpokeApi(Api):
    """A spoke's routes over its :class:`SpokeStore`."""

    title = "genomhub spoke catalogue"
    description = (
        "A region's mirror of the national catalogue: its own and granted samples whole, the rest "
        "as discovery sees them, at one verified revision of the hub's signed feed."
    )

    @classmethod
    def public_paths(cls) -> tuple[str, ...]:
        """The API's, and the portal's pages, which check their own session cookie."""
        return (*super().public_paths(), *PORTAL_PATHS)

    def __init__(self, store: SpokeStore, region: Region) -> None:
        self.store = store
        self.region = region

    def _reader(self, request: web.Request) -> None:
        principal = principal_of(request)
        if principal.region is not None and principal.region != self.region:
            raise http_error(403, f"{principal.name} reads the spoke of {principal.region.value}")

    def _revision(self, shown: Shown | None) -> RevisionShown:
        if shown is None:
            raise http_error(503, "no verified revision yet: the spoke is catching up with its feed")
        return RevisionShown(
            region=self.region,
            revision=shown.revision,
            upto=shown.upto,
            state_hash=shown.state_hash,
            applied_at=shown.applied_at,
        )

    @route(
        "GET",
        "/v1/revision",
        operation_id="getRevision",
        summary="The revision the spoke shows, and when it switched to it.",
        query=NoParameters,
        responses={
            200: answer("The revision.", RevisionShown),
            403: FORBIDDEN,
            422: QUERY_REFUSED,
            503: NOT_YET,
        },
    )
    async def get_revision(self, request: web.Request) -> web.Response:
        self._reader(request)
        revision = self._revision(await asyncio.to_thread(self.store.shown))
        return web.json_response(text=revision.model_dump_json())

    @route(
        "GET",
        "/v1/samples",
        operation_id="listSamples",
        summary="The samples shown that the hub's filters find (a summary by its month of receipt), in key order, a page at a time.",
        query=SampleQuery,
        responses={
            200: answer("The samples.", SampleList),
            403: FORBIDDEN,
            422: QUERY_REFUSED,
            503: NOT_YET,
        },
    )
    async def list_samples(self, request: web.Request) -> web.Response:
        filters = query_of(request, SampleQuery)
        self._reader(request)
        shown, samples, following = await asyncio.to_thread(self.store.listed, filters.search())
        page = SampleList(revision=self._revision(shown), samples=samples, next_cursor=following)
        return web.json_response(text=page.model_dump_json())

    @route(
        "GET",
        "/v1/samples/{region}/{sample_id}",
        operation_id="getSample",
        summary="One sample as the spoke shows it.",
        query=NoParameters,
        path_parameters=SamplePath,
        responses={
            200: answer("The sample.", SampleShown),
            403: FORBIDDEN,
            404: NOT_FOUND,
            422: QUERY_REFUSED,
            503: NOT_YET,
        },
    )
    async def get_sample(self, request: web.Request) -> web.Response:
        where = path_of(request, SamplePath)
        self._reader(request)
        shown, found = await asyncio.to_thread(self.store.sample, sample_key(where.region, where.sample_id))
        revision = self._revision(shown)
        if found is None:
            raise http_error(404, "no such sample")
        return web.json_response(text=SampleShown(revision=revision, sample=found).model_dump_json())

    @route(
        "GET",
        "/v1/stats",
        operation_id="getStats",
        summary="Samples and genome equivalents per region, month of receipt and status: the national overview.",
        query=StatsFilters,
        responses={
            200: answer("The statistics.", SpokeStats),
            403: FORBIDDEN,
            422: QUERY_REFUSED,
            503: NOT_YET,
        },
    )
    async def get_stats(self, request: web.Request) -> web.Response:
        filters = query_of(request, StatsFilters)
        self._reader(request)
        shown, samples, _ = await asyncio.to_thread(self.store.listed, Search(region=filters.region))
        revision = self._revision(shown)
        rows, count, ge = statistics(samples)
        answer_ = SpokeStats(revision=revision, rows=rows, samples=count, genome_equivalents=ge)
        return web.json_response(text=answer_.model_dump_json())


def install(app: web.Application, store: SpokeStore, region: Region, tokens: Tokens) -> None:
    SpokeApi(store, region).install(app, tokens)
