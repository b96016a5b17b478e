"""The one way genomhub tries again: a number of attempts, and a pause before each new one
that doubles from a first pause up to a ceiling.

Every retry follows it, whether the attempts are a loop in one process (an upload's request,
a dead letter the broker could not take yet: :func:`retrying`) or rows in a database that a
later round picks up (a failed harmonisation relaunched, a recall the tape gateway refused:
:meth:`Backoff.pause` gives the row its ``not before``). The pauses double so that a passing
fault is retried soon and a lasting one is not hammered; the ceiling keeps a long series from
waiting longer than a person would.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``attempts`` tries in all; before try ``n + 1`` (after ``n`` failures), a pause of
    ``first * 2 ** (n - 1)`` seconds, never more than ``ceiling``."""

    first: float
    attempts: int
    ceiling: float = math.inf

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first < 0 or self.ceiling < 0:
            raise ValueError(f"a backoff needs at least one attempt and no negative pause: {self}")

    def pause(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts (at least one) before the next."""
        if failures < 1:
            raise ValueError("a pause follows a failure")
        return min(self.ceiling, self.first * 2.0 ** (failures - 1))

    def exhausted(self, failures: int) -> bool:
        """No attempt is left after ``failures`` failures: the work is reported failed."""
        return failures >= self.attempts


class GaveUp(Exception):
    """Every attempt failed; the last failure is the cause."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempt(s): {last}")
        self.attempts, self.last = attempts, last


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    transient: tuple[type[BaseException], ...],
    on_retry: Callable[[BaseException, float], None] = lambda _exc, _pause: None,
) -> T:
    """``attempt`` until it succeeds, pausing after each ``transient`` failure as ``backoff``
    says; any other exception goes through at once, and once the attempts are spent
    :class:`GaveUp` is raised from the last failure. ``on_retry`` hears each failure and its pause."""
    failures = 0
    while True:
        try:
            return await attempt()
        except transient as exc:
            failures += 1
            if backoff.exhausted(failures):
                raise GaveUp(failures, exc) from exc
            pause = backoff.pause(failures)
            on_retry(exc, pause)
            await asyncio.sleep(pause)
