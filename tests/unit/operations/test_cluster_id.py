"""The local broker's KRaft cluster ids: valid, and never read as a command-line option."""

from __future__ import annotations

from base64 import urlsafe_b64decode

from tools.kafka.broker import new_cluster_id


def test_cluster_ids_are_uuids_that_never_start_with_a_dash() -> None:
    ids = [new_cluster_id() for _ in range(5000)]  # about 78 would start with "-" by chance
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
