"""The catalogue database, on SQLite and on a real PostgreSQL server: one suite for both."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import update

from services.indexer import tables
from services.indexer.filters import SampleFilters, parse_query
from services.indexer.store import Catalogue
from shared.events import Region, SampleStatus
from tests.ids import issued_id
from tests.unit.indexer.factories import T0, event, harmonised, submission, validated


def filters(**params: str) -> SampleFilters:
    return parse_query(SampleFilters, params, set())


def test_migrations_build_the_declared_schema_and_rerun_harmlessly(catalogue: Catalogue) -> None:
    catalogue.migrate()
    with catalogue.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_indexer"})
        diff = compare_metadata(context, tables.metadata)
    # The trigram indexes (pg_trgm; SQLite's FTS5 table) exist by migration only; nothing else may differ.
    assert [d for d in diff if not _trigram_index(d)] == []


def _trigram_index(difference: tuple[object, ...]) -> bool:
    kind, item = difference[0], difference[1]
    name = str(getattr(item, "name", ""))
    return (kind == "remove_index" and name == "ix_catalogue_samples_search") or (
        kind == "remove_table" and name.startswith("catalogue_samples_fts")
    )


def test_text_search_follows_a_resubmission(catalogue: Catalogue) -> None:
    first = submission(1, sample="S-X", department="Herlev Hospital", received_at=T0)
    second = submission(2, sample="S-X", department="Gentofte Hospital", received_at=T0 + timedelta(days=1))
    catalogue.apply(event(validated(first, "rejected"), 0))
    assert [s.sample_id for s in catalogue.search(filters(q="herlev")).items] == ["S-X"]
    catalogue.apply(event(harmonised(second), 86400))
    assert catalogue.search(filters(q="herlev")).items == []
    assert [s.sample_id for s in catalogue.search(filters(q="gentofte")).items] == ["S-X"]


def test_harmonised_sample_is_indexed_with_files_checksums_and_tier(catalogue: Catalogue) -> None:
    sub = submission()
    applied = catalogue.apply(event(harmonised(sub), 5))
    assert applied.new
    detail = catalogue.sample(sub.sample_id)
    assert detail is not None
    assert detail.status is SampleStatus.HARMONISED
    assert detail.accepted
    assert detail.genome_equivalents == Decimal("0.001613")
    assert detail.received_month == "2026-02"
    assert detail.files == 4
    assert detail.pipeline == "nf-core/sarek"
    assert {f.tier for f in detail.catalogue_files} == {"hot"}
    assert {f.role for f in detail.catalogue_files} == {"raw_reads", "harmonised"}
    assert all(len(f.sha256) == 64 for f in detail.catalogue_files)
    assert detail.trace_id == event(harmonised(sub), 5).trace_id
    # Metadata only: no location, no credential, no signature leaves through a view.
    text = detail.model_dump_json()
    assert "s3://" not in text and "secret" not in text and "Signature" not in text
    # The location is kept inside, stripped of the credential and signature it came with.
    with catalogue.engine.connect() as conn:
        urls = {r.url for r in conn.execute(tables.files.select())}
    assert f"s3://ngc-archive/hovedstaden/{sub.submission_id}/R1.fastq.gz" in urls
    assert not [u for u in urls if "secret" in u or "?" in u]


def test_the_same_event_twice_changes_nothing(catalogue: Catalogue) -> None:
    e = event(validated(submission(), "rejected"))
    catalogue.apply(e)
    before = catalogue.dump()
    again = catalogue.apply(e)
    assert not again.new
    assert catalogue.dump() == before
    assert before["catalogue_samples"][0]["status"] == "rejected"


def test_out_of_order_delivery_converges(catalogue_url: str) -> None:
    """Every delivery order of a sample's events, with a duplicate, yields the same catalogue."""
    first = submission(1, sample="S-R", received_at=T0)
    second = submission(2, sample="S-R", received_at=T0 + timedelta(days=3))
    events = [
        event(validated(first, "rejected"), 0),
        event(validated(second, "accepted"), 3 * 86400),
        event(harmonised(second), 3 * 86400 + 60),
    ]
    dumps = []
    for n, order in enumerate(itertools.permutations([*events, events[2]])):
        if n % 5:  # 24 orders; every fifth keeps the test quick and still mixes them all
            continue
        url = catalogue_url.replace("catalogue.sqlite", f"c{n}.sqlite") if "sqlite" in catalogue_url else None
        store = Catalogue(url) if url else _fresh_postgres(catalogue_url, n)
        store.migrate()
        for e in order:
            store.apply(e)
        dumps.append(store.dump())
        store.close()
    assert all(d == dumps[0] for d in dumps)
    sample = dumps[0]["catalogue_samples"][0]
    assert (sample["submission_id"], sample["status"], sample["submissions"]) == (
        issued_id("sub-0002"),
        "harmonised",
        2,
    )


def _fresh_postgres(url: str, n: int) -> Catalogue:
    import psycopg

    base, _, name = url.rpartition("/")
    fresh = f"{name}_{n}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh}"')
    return Catalogue(f"{base}/{fresh}")


def test_a_harmonised_event_for_an_unseen_sample_is_indexed_and_completed_later(catalogue: Catalogue) -> None:
    sub = submission()
    catalogue.apply(event(harmonised(sub), 60))
    early = catalogue.submission(sub.submission_id)
    assert early is not None and early.status is SampleStatus.HARMONISED
    assert [t.type for t in early.timeline] == ["harmonised"]
    catalogue.apply(event(validated(sub, "accepted"), 0))
    late = catalogue.submission(sub.submission_id)
    assert late is not None and late.status is SampleStatus.HARMONISED
    assert [t.type for t in late.timeline] == ["validated", "harmonised"]
    assert all(t.trace_id for t in late.timeline)
    detail = catalogue.sample(sub.sample_id)
    assert detail is not None and detail.raw_reads == 2000 and detail.reference_profile == "synthetic-v1"


def test_accepted_qc_alone_is_a_pending_submission_not_a_sample(catalogue: Catalogue) -> None:
    sub = submission()
    applied = catalogue.apply(event(validated(sub, "accepted")))
    assert not applied.record.indexed
    assert catalogue.sample(sub.sample_id) is None
    pending = catalogue.submission(sub.submission_id)
    assert pending is not None and pending.status is None and pending.verdict == "accepted"


def test_a_moved_tier_survives_reindexing(catalogue: Catalogue) -> None:
    e = event(harmonised(submission()))
    catalogue.apply(e)
    with catalogue.engine.begin() as conn:
        conn.execute(update(tables.files).values(tier="tape"))
    catalogue.apply(e)
    detail = catalogue.sample("S-0001")
    assert detail is not None and {f.tier for f in detail.catalogue_files} == {"tape"}


def _populate(catalogue: Catalogue) -> None:
    regions = list(Region)
    for n in range(1, 41):
        sub = submission(
            n,
            region=regions[n % 5].value,
            analysis="WGS" if n % 4 else "WES",
            received_at=T0 + timedelta(hours=n * 24),
            department="Aarhus UH" if n % 3 == 0 else "OUH",
        )
        data = (
            validated(sub, "rejected")
            if n % 7 == 0
            else harmonised(sub, "failed" if n % 11 == 0 else "succeeded")
        )
        catalogue.apply(event(data, n))


def test_search_filters_and_keyset_pages(catalogue: Catalogue) -> None:
    _populate(catalogue)
    everything = catalogue.search(filters(limit="500")).items
    assert len(everything) == 40
    assert [s.received_at for s in everything] == sorted((s.received_at for s in everything), reverse=True)

    pages, cursor = [], None
    while True:
        page = catalogue.search(filters(limit="7", **({"cursor": cursor} if cursor else {})))
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert [s.sample_id for p in pages for s in p] == [s.sample_id for s in everything]

    north = catalogue.search(filters(region="nordjylland", limit="500")).items
    assert north and {s.region for s in north} == {Region.NORDJYLLAND}
    assert len(north) == sum(1 for s in everything if s.region is Region.NORDJYLLAND)
    wes = catalogue.search(filters(analysis="WES", limit="500")).items
    assert len(wes) == 10
    rejected = catalogue.search(filters(status="rejected", limit="500")).items
    assert {s.sample_id for s in rejected} == {f"S-{n:04d}" for n in (7, 14, 21, 28, 35)}
    failed = catalogue.search(filters(status="harmonisation_failed", limit="500")).items
    assert {s.sample_id for s in failed} == {"S-0011", "S-0022", "S-0033"}
    aarhus = catalogue.search(filters(q="AARHUS uh", limit="500")).items
    assert len(aarhus) == 13
    assert catalogue.search(filters(q="s-0017")).items[0].sample_id == "S-0017"
    assert catalogue.search(filters(q="100%")).items == []  # % is literal, not a wildcard
    scoped = catalogue.search(filters(limit="500"), scope=Region.SJAELLAND).items
    assert {s.region for s in scoped} == {Region.SJAELLAND}


def test_received_days_are_copenhagen_days(catalogue: Catalogue) -> None:
    # 23:30 UTC on 31 January is 00:30 on 1 February in Copenhagen.
    catalogue.apply(event(harmonised(submission(1, received_at=T0))))
    catalogue.apply(event(harmonised(submission(2, received_at=T0 - timedelta(hours=1)))))
    feb = catalogue.search(filters(received_from="2026-02-01", received_to="2026-02-01")).items
    jan = catalogue.search(filters(received_to="2026-01-31")).items
    assert [s.sample_id for s in feb] == ["S-0001"]
    assert [s.sample_id for s in jan] == ["S-0002"]


def test_stats_per_region_month_and_status(catalogue: Catalogue) -> None:
    _populate(catalogue)
    stats = catalogue.stats()
    assert stats.samples == 40
    assert stats.genome_equivalents == Decimal("0.001613") * 40
    assert sum(r.samples for r in stats.rows) == 40
    keys = [(r.region, r.month, r.status) for r in stats.rows]
    assert len(keys) == len(set(keys))
    assert {r.month for r in stats.rows} == {"2026-02", "2026-03"}
    south = catalogue.stats(Region.SYDDANMARK)
    assert {r.region for r in south.rows} == {Region.SYDDANMARK}
    assert south.samples == sum(r.samples for r in stats.rows if r.region is Region.SYDDANMARK)


def test_timeline_lists_events_with_trace_ids(catalogue: Catalogue) -> None:
    sub = submission()
    catalogue.apply(event(harmonised(sub, "failed"), 10))
    catalogue.apply(event(harmonised(sub, "succeeded"), 20))
    detail = catalogue.submission(sub.submission_id)
    assert detail is not None
    assert [t.summary for t in detail.timeline] == ["harmonisation failed", "harmonisation succeeded"]
    assert detail.timeline[0].time == datetime(2026, 1, 31, 23, 30, 10, tzinfo=UTC)
    assert detail.status is SampleStatus.HARMONISED
    assert catalogue.submission(sub.submission_id, scope=Region.MIDTJYLLAND) is None
    assert catalogue.sample(sub.sample_id, scope=Region.MIDTJYLLAND) is None
