"""A campaign's plan mounts each tape once, reads it in tape order, and balances the drives."""

from __future__ import annotations

import pytest

from services.archive.campaign import OnTape, physical_bound, plan


def test_each_tape_is_mounted_once_and_read_in_tape_order() -> None:
    files = [
        OnTape("r/S2/b", "T1", 7, 10),
        OnTape("r/S1/a", "T2", 3, 40),
        OnTape("r/S1/b", "T1", 2, 10),
        OnTape("r/S3/a", "T3", 1, 30),
        OnTape("r/S2/a", "T2", 1, 40),
    ]
    schedule = plan(files, drives=2, mount_seconds=0, rate=1)
    visits = [v for drive in schedule for v in drive]
    assert sorted(v.tape for v in visits) == ["T1", "T2", "T3"]
    assert [f.path for v in visits if v.tape == "T1" for f in v.files] == ["r/S1/b", "r/S2/b"]
    assert [[v.tape for v in drive] for drive in schedule] == [["T2"], ["T3", "T1"]]  # 80 | 30 + 20
    assert physical_bound(files, drives=2, mount_seconds=0, rate=1) == 65


def test_a_campaign_needs_a_drive() -> None:
    with pytest.raises(ValueError, match="at least one drive"):
        plan([], drives=0, mount_seconds=1, rate=1)
