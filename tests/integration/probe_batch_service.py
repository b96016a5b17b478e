"""A service with a batch handler on the shared bus, run as a real process by the bus tests.

It consumes indexed events and accrues each poll batch through billing's own store in one
transaction (``BillingStore.accrue_all``), the effect a national replay repeats; every
attempt at a batch is logged (one line per record: the process, the batch's number and the event id), so
a test sees which records came in one batch and which were delivered again. With a crash
marker present (``<database>.crash``, holding the start of an event id), at a batch with
such an event it deletes the marker and kills itself after the batch's accruals are
durable and before the handler returns, so before the batch's offsets are committed: the
batch is delivered again, and must not be accrued twice. It reaches the broker as the admin,
so each probe may have a consumer group of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.billing.accrual import accrual_of
from services.billing.store import BillingStore
from shared import telemetry
from shared.bus import Consumed, Service
from shared.config import ServiceSettings
from shared.events import Indexed
from shared.topics import ADMIN


def main(name: str, database: Path, port: int) -> None:
    service = Service(name, ServiceSettings(port=port), principal=ADMIN)
    store = BillingStore(f"sqlite:///{database}")
    attempts = database.with_suffix(".attempts")
    crash_marker = database.with_suffix(".crash")
    batches = iter(range(1_000_000))

    async def accrue(batch: Sequence[Consumed[Indexed]]) -> None:
        number = next(batches)
        with attempts.open("a") as out:
            out.writelines(f"{os.getpid()} {number} {c.envelope.id}\n" for c in batch)
        found = []
        for c in batch:
            with c.current():  # the accrual keeps its own record's trace context
                found.append(accrual_of(c.envelope.data, c.envelope.id, telemetry.current_traceparent()))
        await asyncio.to_thread(store.accrue_all, [a for a in found if a is not None])
        if crash_marker.exists() and any(c.envelope.id.startswith(crash_marker.read_text()) for c in batch):
            crash_marker.unlink()
            os._exit(17)

    service.on_batch(Indexed, accrue)
    service.run()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
