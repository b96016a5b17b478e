"""A minimal service on the shared bus, run as a real process by the bus tests.

It consumes file-received and appends each submission id to a file: a durable effect. With
``CRASH_MARKER`` present it deletes the marker and kills itself mid-way through the handler,
before the effect, to show that an unacknowledged record is delivered again. A fourth
argument makes each record take that many seconds to handle, half before its effect and
half after, so that a rebalance or a stop can find a record in the middle of its handling. It is no
registered service and has no principal of its own: it reaches the broker as the admin, so
each probe may have a consumer group of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.bus import Service
from shared.config import ServiceSettings
from shared.envelope import Envelope
from shared.events import FileReceived
from shared.telemetry import current_trace_id
from shared.topics import ADMIN


def main(name: str, effects: Path, port: int, handling_s: float = 0.0) -> None:
    service = Service(name, ServiceSettings(port=port), principal=ADMIN)
    crash_marker = effects.with_suffix(".crash")

    async def handle(envelope: Envelope[FileReceived]) -> None:
        if crash_marker.exists():
            crash_marker.unlink()
            os._exit(17)
        await asyncio.sleep(handling_s / 2)  # work before the effect
        with effects.open("a") as out:
            out.write(f"{envelope.data.submission.submission_id} {envelope.id} {current_trace_id()}\n")
            out.flush()
            os.fsync(out.fileno())
        await asyncio.sleep(handling_s / 2)  # and after it (an emit, say)

    service.on(FileReceived, handle)
    service.run()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), *map(float, sys.argv[4:5]))
