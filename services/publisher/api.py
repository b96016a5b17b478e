"""The publisher's read API: how far each spoke is behind the feed the hub writes for it.

What the hub published is its writers' (revision, last sequence number); what a spoke shows
is the last ``spoke-revision-applied`` it acknowledged. Only the replica that writes the feeds
knows the first, so a standby answers 503 with ``Retry-After`` (behind one address, the next
try may reach the writer). The national operator's token (ngc) reads every spoke; a region's
token reads its own spoke's row alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.indexer.api import QUERY_REFUSED, NoParameters
from services.publisher.writer import FeedWriter
from shared.api import Api, answer, refusal, route
from shared.auth import Tokens, principal_of
from shared.events import Region, SpokeRevisionApplied
from shared.http import http_error

STANDBY = refusal("This replica does not write the feeds: retry, the writer answers.")


class SpokeLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: Region
    published_revision: int = Field(
        description="The newest revision the hub checkpointed on the spoke's feed."
    )
    published_upto: int = Field(description="The last entry that revision covers.")
    shown_revision: int | None = Field(description="The revision the spoke last said it shows; None: never.")
    shown_upto: int | None = Field(description="The last sequence number that revision covers.")
    entries_behind: int | None = Field(
        description="Feed entries up to the hub's newest revision that the spoke does not show yet."
    )
    acknowledged_at: datetime | None = Field(description="When the spoke switched to the revision it shows.")


class SpokeLags(BaseModel):
    model_config = ConfigDict(frozen=True)

    spokes: list[SpokeLag]


class PublisherApi(Api):
    title = "genomhub publisher"
    description = "Each spoke's signed catalogue feed, as the hub wrote it and as the spoke shows it."

    def __init__(
        self, writers: Mapping[Region, FeedWriter], shown: Mapping[Region, SpokeRevisionApplied]
    ) -> None:
        self.writers = writers
        self.shown = shown

    @route(
        "GET",
        "/v1/spokes",
        operation_id="listSpokes",
        summary="Each spoke's feed: the hub's revision, the spoke's, and how many entries behind it is.",
        query=NoParameters,
        responses={
            200: answer("Every spoke the token may see.", SpokeLags),
            422: QUERY_REFUSED,
            503: STANDBY,
        },
    )
    async def list_spokes(self, request: web.Request) -> web.Response:
        own = principal_of(request).region
        writers = self.writers
        if len(writers) < len(Region):
            raise http_error(
                503,
                "this replica does not write the feeds (a standby, or still restoring)",
                headers={"Retry-After": "1"},
            )
        rows = []
        for region in Region:
            if own is not None and region != own:
                continue
            writer, shown = writers.get(region), self.shown.get(region)
            upto = writer.upto if writer is not None else 0
            rows.append(
                SpokeLag(
                    region=region,
                    published_revision=writer.revision if writer is not None else 0,
                    published_upto=upto,
                    shown_revision=shown.revision if shown else None,
                    shown_upto=shown.upto if shown else None,
                    entries_behind=max(upto - shown.upto, 0) if shown else None,
                    acknowledged_at=shown.applied_at if shown else None,
                )
            )
        return web.json_response(text=SpokeLags(spokes=rows).model_dump_json())


def install(
    app: web.Application,
    writers: Mapping[Region, FeedWriter],
    shown: Mapping[Region, SpokeRevisionApplied],
    tokens: Tokens,
) -> None:
    PublisherApi(writers, shown).install(app, tokens)
