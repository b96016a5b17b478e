"""Whether an archived file can be read now, or is being recalled from tape and when to come
back: the one decision DRS (202 with Retry-After, as DRS 1.4 allows) and htsget both make.

A file the archive's tiers hold readable (hot, warm, or staged from tape) is readable now.
A file on tape alone joins the recall under way for it (whoever asked: another working copy,
an operator, a campaign), or starts one with recall-requested, written to the outbox in the
same transaction as the recall it now waits for; nothing waits for tape here. The wait told
is the archive's recall scheduler's estimate (recall-updated) once it has given one, and one
recall's duration on a free drive before that.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from services.access.objects import ArchivedObject
from services.access.store import AccessStore, KnownRecall
from shared.envelope import derive_id
from shared.events import RecallRequested
from shared.tiers import ArchiveTiers, NeedsRecall

RECALL_NAMESPACE = uuid.UUID("0d7c6a52-8f0e-4c55-b7b3-2f8a6c1e9d40")
"""Recall ids of working copies: uuid5 of the file's path and the recall before, so replicas
asking at once for one file ask for the same recall, which the archive records once."""


@dataclass(frozen=True)
class ReadableNow:
    """The file's bytes can be read now."""


@dataclass(frozen=True)
class RecallUnderWay:
    """The file is on tape; ``recall`` is what it waits for; come back after ``retry_after`` seconds."""

    recall: KnownRecall
    retry_after: int
    started_here: bool
    """This request asked for the recall (a recall-requested is in the outbox to send)."""


Availability = ReadableNow | RecallUnderWay


class RecallWait(BaseModel):
    """The body of a 202: the file is being recalled from tape; ask again after Retry-After."""

    msg: str
    status_code: int = 202
    recall_id: str
    state: str = Field(description="The recall's WLCG tape state: SUBMITTED or STARTED.")
    expected_at: datetime | None = Field(description="The archive's estimate of when the file is staged.")
    retry_after: int = Field(description="Seconds, as the Retry-After header says.")

    @classmethod
    def of(cls, waiting: RecallUnderWay) -> RecallWait:
        return cls(
            msg="the file is on tape and being recalled; the same request succeeds once it is staged",
            recall_id=waiting.recall.recall_id,
            state=waiting.recall.state,
            expected_at=waiting.recall.expected_at,
            retry_after=waiting.retry_after,
        )


def retry_after(recall: KnownRecall, duration: timedelta, now: datetime) -> int:
    """Seconds until the scheduler expects the file staged (at least one); before it has
    said, one recall's duration."""
    wait = (recall.expected_at - now) if recall.expected_at is not None else duration
    return max(1, math.ceil(wait.total_seconds()))


def availability(
    found: ArchivedObject, tiers: ArchiveTiers, store: AccessStore, now: datetime, requested_by: str
) -> Availability:
    """Readable now, or the recall under way with its estimate (started if none was).
    Synchronous (the tiers and the database are looked at): call it in a thread. A file no
    tier holds raises :class:`FileNotFoundError`."""
    try:
        tiers.locate(found.url)
        return ReadableNow()
    except NeedsRecall as needs:
        path = needs.path
    duration = timedelta(seconds=tiers.delay)
    known = store.recall_of(path)
    if known is not None and not known.ended:
        return RecallUnderWay(known, retry_after(known, duration, now), started_here=False)
    before = known.recall_id if known is not None else ""
    recall_id = uuid.uuid5(RECALL_NAMESPACE, f"{path}|{before}").hex
    asked = KnownRecall(path, recall_id, "SUBMITTED", None, None, now)
    event = RecallRequested(
        recall_id=recall_id,
        region=found.region,
        sample_id=found.sample_id,
        paths=[path],
        requested_by=requested_by,
        requested_at=now,
    )
    waited = store.ask_recall(asked, event, derive_id(recall_id, "access", event.ce_type()))
    return RecallUnderWay(waited, retry_after(waited, duration, now), started_here=waited == asked)
