"""Named leases in a store's database: one holder at a time, freed by expiry, lost when taken over."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from services.receiver.state import SubmissionStore
from shared.database import LeaseHeld, LeaseLost, NamedLeases


def test_one_holder_until_release_or_expiry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    mine, theirs = SubmissionStore(url), SubmissionStore(url)  # two replicas: two engines
    a = NamedLeases(mine, mine.leases.table, timedelta(seconds=0.3))
    b = NamedLeases(theirs, theirs.leases.table, timedelta(seconds=0.3))
    held = a.acquire("sub/R1")
    with pytest.raises(LeaseHeld):
        b.acquire("sub/R1")
    with pytest.raises(LeaseHeld):
        a.acquire("sub/R1")  # a second holding of one replica is another holder
    assert b.acquire("sub/R2").name == "sub/R2"
    assert a.renew(held)
    time.sleep(0.35)  # the holder died: nobody renewed
    taken = b.acquire("sub/R1")
    assert not a.renew(held) and held.lost
    with pytest.raises(LeaseLost):
        held.guard(lambda: None)()
    a.release(held)  # the old holder's release leaves the new holding alone
    with pytest.raises(LeaseHeld):
        a.acquire("sub/R1")
    b.release(taken)
    a.release(a.acquire("sub/R1"))
    mine.dispose()
    theirs.dispose()


async def test_held_heartbeats_past_the_length_and_releases(tmp_path: Path) -> None:
    store = SubmissionStore(f"sqlite:///{tmp_path / 'r.db'}", lease_length=timedelta(seconds=0.3))
    async with store.leases.held("sub//seal") as lease:
        await asyncio.sleep(0.8)  # more than two lengths: kept alive by its heartbeat
        lease.check()
        with pytest.raises(LeaseHeld):
            store.leases.acquire("sub//seal")
    async with store.leases.held("sub//seal", wait=1.0):
        pass  # released on leaving the block
    store.dispose()
