"""When the recall scheduler expects each file under recall staged: what a DRS client is told
to wait (Retry-After) and the catalogue shows.

The estimate follows the scheduler's own rules (``recalls.Recaller.tick``): a STARTED file
holds its drive for one recall's duration from when it started; the SUBMITTED files get the
drives in the order the scheduler gives them out (longest waiting first, by path within that),
each as soon as a drive frees up and no earlier than its backoff allows. It is an estimate:
a gateway's real recall time varies, so it is recomputed whenever a file changes state.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime, timedelta

from .placement import RecallFile
from .recalls import STARTED, SUBMITTED


def expected_staged(
    files: Iterable[RecallFile], drives: int, duration: timedelta, now: datetime
) -> dict[tuple[str, str], datetime]:
    """(request id, path) -> when that file is expected staged, for every file under way.

    Several requests for one path share its recall (one drive), as the scheduler does."""
    listed = list(files)
    started: dict[str, datetime] = {}
    for file in listed:
        if file.state == STARTED and file.started_at is not None:
            ends = max(file.started_at + duration, now)
            started[file.path] = min(started.get(file.path, ends), ends)
    free = sorted(started.values())[:drives]
    free += [now] * (drives - len(free))
    heapq.heapify(free)
    waiting = sorted(
        (f for f in listed if f.state == SUBMITTED and f.path not in started),
        key=lambda f: (f.not_before, f.path),
    )
    at: dict[str, datetime] = dict(started)
    for file in waiting:
        if file.path in at:
            continue
        drive_free = heapq.heappop(free)
        ends = max(drive_free, file.not_before, now) + duration
        heapq.heappush(free, ends)
        at[file.path] = ends
    return {(f.request_id, f.path): at[f.path] for f in listed if f.path in at}
