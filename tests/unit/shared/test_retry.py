"""The one retry rule: doubling pauses up to a ceiling, a count of attempts, transient
failures tried again and every other failure through at once."""

from __future__ import annotations

import pytest

from shared.retry import Backoff, GaveUp, retrying


def test_pauses_double_from_the_first_up_to_the_ceiling() -> None:
    backoff = Backoff(0.5, 8, ceiling=3.0)
    assert [backoff.pause(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not backoff.exhausted(7) and backoff.exhausted(8)
    with pytest.raises(ValueError):
        backoff.pause(0)
    with pytest.raises(ValueError):
        Backoff(1.0, 0)


async def test_transient_failures_are_tried_again_until_one_attempt_succeeds() -> None:
    calls: list[int] = []
    heard: list[float] = []

    async def flaky() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "done"

    found = await retrying(flaky, Backoff(0.001, 5), (ConnectionError,), lambda _e, p: heard.append(p))
    assert found == "done" and len(calls) == 3 and heard == [0.001, 0.002]


async def test_the_last_failure_is_the_cause_once_the_attempts_are_spent() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TimeoutError(f"attempt {calls}")

    with pytest.raises(GaveUp) as gave_up:
        await retrying(down, Backoff(0.001, 3), (TimeoutError,))
    assert calls == 3 and gave_up.value.attempts == 3 and str(gave_up.value.last) == "attempt 3"


async def test_a_failure_that_is_not_transient_goes_through_at_once() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("403")

    with pytest.raises(PermissionError):
        await retrying(refused, Backoff(0.001, 5), (ConnectionError,))
    assert calls == 1
