"""Recalls from tape, in the WLCG tape REST states, driven by a tick that never waits.

Whoever needs a cold file (a working copy, a re-harmonisation, an operator) asks for a recall
request of some files; each file is SUBMITTED, gets a drive (STARTED) when one is free, and
is COMPLETED once staged, pinned for the configured lifetime; a file already on a readable
tier is COMPLETED at once. A gateway error, or a staged copy that expired before it was used,
is retried with doubling backoff and, after the configured attempts, the file is FAILED with
the reason; a request may be CANCELLED. Every state is in the database, so a restarted
service goes on where it was, and a file under recall for several requests takes one drive.

:meth:`Recaller.tick` does one round and returns at once; the service calls it on a timer,
so no consumer and no HTTP request waits for tape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.retry import Backoff
from shared.tiers import ColdTier, TierError

from .placement import PlacementStore, RecallFile

SUBMITTED, STARTED, COMPLETED, FAILED, CANCELLED = "SUBMITTED", "STARTED", "COMPLETED", "FAILED", "CANCELLED"
UNDER_WAY = (SUBMITTED, STARTED)
FINAL = (COMPLETED, FAILED, CANCELLED)


def request_state(states: list[str]) -> str:
    """A request's state from its files': under way while any is; then FAILED if any file
    failed, CANCELLED if all were cancelled, else COMPLETED."""
    if any(s in UNDER_WAY for s in states):
        return STARTED if any(s != SUBMITTED for s in states) else SUBMITTED
    if FAILED in states:
        return FAILED
    if states and all(s == CANCELLED for s in states):
        return CANCELLED
    return COMPLETED


@dataclass(frozen=True)
class Staged:
    """A file of a request became readable: what ``file-staged`` tells the waiting party."""

    request_id: str
    path: str
    tier: str
    pinned_until: datetime


@dataclass(frozen=True)
class RecallPolicy:
    drives: int
    pin: timedelta
    attempts: int = 4
    backoff: timedelta = timedelta(minutes=5)

    @property
    def retries(self) -> Backoff:
        """A file's recalls: ``attempts`` in all, ``backoff`` before the second, doubling."""
        return Backoff(self.backoff.total_seconds(), self.attempts)


class Recaller:
    def __init__(
        self, store: PlacementStore, cold: ColdTier, policy: RecallPolicy, clock: Callable[[], datetime]
    ) -> None:
        self.store, self.cold, self.policy, self.clock = store, cold, policy, clock

    def request(self, request_id: str, requester: str, paths: list[str]) -> bool:
        """Ask for ``paths`` (each one the archive knows); False if the request exists already."""
        unknown = [p for p in paths if self.store.file(p) is None]
        if unknown or not paths:
            raise ValueError(f"no archived body at {', '.join(unknown) or 'any path (none given)'}")
        return self.store.request_recall(request_id, requester, paths, self.clock())

    def cancel(self, request_id: str) -> int:
        """Cancel what of the request is still under way; the files cancelled."""
        now = self.clock()
        return sum(
            self.store.set_recall(f, UNDER_WAY, state=CANCELLED, finished_at=now, reason="cancelled")
            for f in self.store.recall_files(request_id, UNDER_WAY)
        )

    def status(self, request_id: str) -> tuple[str, list[RecallFile]]:
        files = self.store.recall_files(request_id)
        return request_state([f.state for f in files]), files

    def tick(self) -> list[Staged]:
        """One round: look at the recalls on the drives, then give free drives to the files
        waiting longest (by path within that, so a sample's files go together)."""
        staged = self._look_at_started()
        now = self.clock()
        busy = {f.path for f in self.store.recall_files(states=(STARTED,))}
        waiting = [f for f in self.store.recall_files(states=(SUBMITTED,)) if f.not_before <= now]
        waiting.sort(key=lambda f: (f.not_before, f.path))
        for file in waiting:
            placed = self.store.file(file.path)
            assert placed is not None  # requests name known files only
            if placed.tier != "cold":  # already readable: the pin is a fresh access
                self.store.touched(file.path, now)
                staged += self._complete(file, placed.tier, now + self.policy.pin, expected=(SUBMITTED,))
                continue
            if file.path not in busy and len(busy) >= self.policy.drives:
                continue
            try:
                self.cold.recall(file.path, self.policy.pin.total_seconds())
            except TierError as exc:
                self._failed_attempt(file, str(exc), (SUBMITTED,))
                continue
            busy.add(file.path)
            self.store.set_recall(
                file, (SUBMITTED,), state=STARTED, started_at=now, attempts=file.attempts + 1
            )
        return staged + self._look_at_started()

    def _look_at_started(self) -> list[Staged]:
        staged: list[Staged] = []
        for file in self.store.recall_files(states=(STARTED,)):
            try:
                where = self.cold.residence(file.path)
            except TierError as exc:
                self._failed_attempt(file, str(exc), (STARTED,))
                continue
            if where.state == "staged":
                until = datetime.fromtimestamp(where.expires, self.clock().tzinfo) if where.expires else None
                staged += self._complete(file, "cold", until or self.clock() + self.policy.pin, (STARTED,))
            elif where.state == "offline":  # the gateway lost the recall, or its copy expired unused
                self._failed_attempt(file, "the recall ended without the file staged", (STARTED,))
        return staged

    def _complete(
        self, file: RecallFile, tier: str, until: datetime, expected: tuple[str, ...]
    ) -> list[Staged]:
        now = self.clock()
        if not self.store.set_recall(file, expected, state=COMPLETED, finished_at=now, pinned_until=until):
            return []
        return [Staged(file.request_id, file.path, tier, until)]

    def _failed_attempt(self, file: RecallFile, reason: str, expected: tuple[str, ...]) -> None:
        now = self.clock()
        attempts = file.attempts + (1 if file.state == SUBMITTED else 0)
        if self.policy.retries.exhausted(attempts):
            self.store.set_recall(
                file, expected, state=FAILED, attempts=attempts, finished_at=now, reason=reason
            )
            return
        delay = timedelta(seconds=self.policy.retries.pause(max(1, attempts)))
        self.store.set_recall(
            file, expected, state=SUBMITTED, attempts=attempts, not_before=now + delay, reason=reason
        )
