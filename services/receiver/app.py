"""The receiver process: the upload API on the service's aiohttp app, emitting file-received.

The receiver consumes nothing; it starts the chain. Its event ids come from the submission
id, so a seal repeated (by the client, or by the resend at start-up after a crash between
seal and emit) sends the same event id again and everything downstream stays idempotent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from aiohttp.typedefs import Middleware

from services.receiver.api import ReceiverApi, count_requests
from services.receiver.archive import Layout
from services.receiver.state import SubmissionStore
from shared.auth import Tokens
from shared.bus import Service
from shared.config import ReceiverSettings
from shared.events import FileReceived
from shared.http import BodyReaders, Pace
from shared.storage import ArchiveWriter, use_s3_endpoint


def build() -> Service:
    settings = ReceiverSettings()
    use_s3_endpoint(settings.archive.s3_endpoint_url)
    service = Service("receiver", settings)
    # The start-up key check: no receiver takes a byte it could not encrypt, or an upload it
    # could not resume (the archive key opens the header of a file in transit).
    writer = ArchiveWriter.of(settings.archive, service.archive_key)
    store = SubmissionStore(settings.database_url, lease_length=timedelta(seconds=settings.lease_seconds))
    service.readiness.append(store.readiness())

    async def emit(event: FileReceived, event_id: str) -> str:
        return await service.emit(event, event_id=event_id)

    api = ReceiverApi(
        store,
        Layout(settings.archive.store_url),
        emit,
        service.tracer,
        max_file_size=settings.max_file_size,
        pace=Pace(
            idle_timeout=settings.idle_timeout,
            min_rate=settings.min_rate,
            grace=settings.min_rate_grace,
        ),
        bodies=BodyReaders(settings.max_uploads, settings.max_uploads_per_region),
        inboxes=dict(settings.inboxes),
        s3_part_size=settings.s3_part_size,
        writer=writer,
    )
    service.web.middlewares.append(cast(Middleware, count_requests))  # ahead of auth: 401s count too
    api.install(service.web, Tokens(settings.access.tokens))
    service.task(api.resend_unsent)
    return service
