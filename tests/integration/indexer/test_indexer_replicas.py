"""Two indexer replicas on one catalogue database: the same and overlapping events applied
at once leave exactly the rows one indexer applying each event once leaves.

Each replica is its own store (its own engine), as two pods are; they meet only in the
database, on SQLite (one file) and on PostgreSQL. Several submissions share a sample, so
both replicas refresh the same sample rows at the same time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.indexer.catalogue import CatalogueEvent
from services.indexer.store import Catalogue
from tests.postgres import PostgresServer
from tests.unit.indexer.factories import event, harmonised, submission, validated

SUBMISSIONS = 24
SAMPLES = 8


def the_log() -> list[CatalogueEvent]:
    """Each submission's validated and harmonised events; three submissions per sample."""
    log = []
    for n in range(1, SUBMISSIONS + 1):
        sub = submission(n, sample=f"S-{n % SAMPLES}", region="hovedstaden" if n % 2 else "syddanmark")
        log.append(event(validated(sub, verdict="accepted"), n))
        log.append(event(harmonised(sub, status="succeeded" if n % 3 else "failed"), n + 0.5))
    return log


@pytest.fixture
def reference_url(catalogue_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second empty database of the same engine, for the one-indexer reference."""
    if catalogue_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'reference.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database("reference")


@pytest.fixture
def replicas(catalogue_url: str) -> Iterator[tuple[Catalogue, Catalogue]]:
    first, second = Catalogue(catalogue_url), Catalogue(catalogue_url)
    first.migrate()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def apply_all(store: Catalogue, events: Sequence[CatalogueEvent], start: threading.Barrier) -> list[bool]:
    start.wait()
    return [store.apply(e).new for e in events]


def test_two_replicas_applying_overlapping_events_index_each_row_once(
    replicas: tuple[Catalogue, Catalogue], reference_url: str
) -> None:
    log = the_log()
    reference = Catalogue(reference_url)
    reference.migrate()
    try:
        for e in log:
            reference.apply(e)
        expected = reference.dump()
    finally:
        reference.close()
    a, b = replicas
    # Replica a is handed the first two thirds of the log, replica b the last two thirds
    # backwards: the middle third reaches both, in opposite orders, at the same time.
    third = len(log) // 3
    start = threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(apply_all, a, log[: 2 * third], start)
        second = pool.submit(apply_all, b, log[third:][::-1], start)
        news = Counter(first.result() + second.result())
    assert news == {True: len(log), False: third}
    assert a.dump() == b.dump() == expected
    samples = Counter((r["region"], r["sample_id"]) for r in expected["catalogue_samples"])
    assert len(samples) == SAMPLES and set(samples.values()) == {1}
    assert len(expected["catalogue_submissions"]) == SUBMISSIONS
    assert len(expected["catalogue_events"]) == len(log)
