"""The catalogue database, on SQLite and on a real PostgreSQL server: one suite for both."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, update

from services.indexer import tables
from services.indexer.catalogue import fold
from services.indexer.filters import SampleFilters, parse_query
from services.indexer.store import (
    MIGRATIONS,
    SERVICE,
    Catalogue,
    event_row,
    file_rows,
    sample_row,
    submission_row,
)
from shared.database import alembic_config, make_engine
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
    detail = catalogue.sample(sub.region, sub.sample_id)
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
    detail = catalogue.sample(sub.region, sub.sample_id)
    assert detail is not None and detail.raw_reads == 2000 and detail.reference_profile == "synthetic-v1"


def test_accepted_qc_alone_is_a_pending_submission_not_a_sample(catalogue: Catalogue) -> None:
    sub = submission()
    applied = catalogue.apply(event(validated(sub, "accepted")))
    assert not applied.record.indexed
    assert catalogue.sample(sub.region, sub.sample_id) is None
    pending = catalogue.submission(sub.submission_id)
    assert pending is not None and pending.status is None and pending.verdict == "accepted"


def test_a_moved_tier_survives_reindexing(catalogue: Catalogue) -> None:
    e = event(harmonised(submission()))
    catalogue.apply(e)
    with catalogue.engine.begin() as conn:
        conn.execute(update(tables.files).values(tier="tape"))
    catalogue.apply(e)
    detail = catalogue.sample(Region.HOVEDSTADEN, "S-0001")
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
    assert catalogue.sample(sub.region, sub.sample_id, scope=Region.MIDTJYLLAND) is None


def test_two_regions_samples_of_one_pseudonym_are_two_samples(catalogue: Catalogue) -> None:
    """Pseudonyms are the regions' own: syddanmark's S-1 does not take over hovedstaden's S-1."""
    capital = submission(1, sample="S-1", region="hovedstaden", received_at=T0)
    south = submission(2, sample="S-1", region="syddanmark", received_at=T0 + timedelta(days=1))
    catalogue.apply(event(validated(capital, "rejected"), 0))
    catalogue.apply(event(harmonised(south), 86400))
    for region, shown in ((Region.HOVEDSTADEN, capital), (Region.SYDDANMARK, south)):
        own = catalogue.search(filters(), scope=region).items
        assert [(s.region, s.sample_id, s.submission_id) for s in own] == [
            (region, "S-1", shown.submission_id)
        ]
        detail = catalogue.sample(region, "S-1", scope=region)
        assert detail is not None and detail.submission_id == shown.submission_id
        assert [h.submission_id for h in detail.history] == [shown.submission_id]
    assert catalogue.sample(Region.HOVEDSTADEN, "S-1", scope=Region.SYDDANMARK) is None
    assert catalogue.sample(Region.MIDTJYLLAND, "S-1") is None
    assert len(catalogue.search(filters(q="s-1")).items) == 2
    assert catalogue.stats().samples == 2

    # hovedstaden resubmits its own S-1 and it is harmonised: its row, not syddanmark's.
    again = submission(3, sample="S-1", region="hovedstaden", received_at=T0 + timedelta(days=2))
    applied = catalogue.apply(event(harmonised(again), 2 * 86400))
    assert applied.record.indexed
    capital_row = catalogue.sample(Region.HOVEDSTADEN, "S-1")
    south_row = catalogue.sample(Region.SYDDANMARK, "S-1")
    assert capital_row is not None and south_row is not None
    assert (capital_row.submission_id, capital_row.status, capital_row.submissions) == (
        again.submission_id,
        SampleStatus.HARMONISED,
        2,
    )
    assert (south_row.submission_id, south_row.submissions) == (south.submission_id, 1)


def test_a_page_boundary_between_two_regions_samples_of_one_pseudonym(catalogue: Catalogue) -> None:
    for n, region in enumerate(("hovedstaden", "sjaelland", "syddanmark"), start=1):
        catalogue.apply(event(harmonised(submission(n, sample="S-SAME", region=region)), n))
    pages: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        page = catalogue.search(filters(limit="1", **({"cursor": cursor} if cursor else {})))
        pages.extend((s.region.value, s.sample_id) for s in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert pages == [("syddanmark", "S-SAME"), ("sjaelland", "S-SAME"), ("hovedstaden", "S-SAME")]


def test_the_upgrade_from_0002_keeps_the_catalogue_and_keys_samples_by_region(catalogue_url: str) -> None:
    """A catalogue written at the previous head (samples keyed by pseudonym) upgrades in place."""
    command.upgrade(alembic_config(catalogue_url, MIGRATIONS, SERVICE), "0002")
    sub = submission(1, sample="S-OLD", department="Herlev Hospital")
    e = event(harmonised(sub), 5)
    record = fold([e])
    engine = make_engine(catalogue_url)
    old = MetaData()
    old.reflect(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["catalogue_events"].insert(), event_row(e))
        conn.execute(old.tables["catalogue_submissions"].insert(), submission_row(record))
        conn.execute(
            old.tables["catalogue_files"].insert(),
            [{k: v for k, v in row.items() if k != "region"} for row in file_rows(record)],
        )
        conn.execute(
            old.tables["catalogue_samples"].insert(), sample_row(submission_row(record), len(record.files), 1)
        )
    engine.dispose()

    store = Catalogue(catalogue_url)
    try:
        store.migrate()
        keys = inspect(store.engine).get_pk_constraint("catalogue_samples")["constrained_columns"]
        assert keys == ["region", "sample_id"]
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_indexer"})
            assert [d for d in compare_metadata(context, tables.metadata) if not _trigram_index(d)] == []
        detail = store.sample(Region.HOVEDSTADEN, "S-OLD")
        assert detail is not None and detail.files == 4 and len(detail.catalogue_files) == 4
        assert {r["region"] for r in store.dump()["catalogue_files"]} == {"hovedstaden"}
        # The rare-term index (SQLite's FTS5) was rebuilt over the re-keyed rows, and follows new ones.
        assert [s.sample_id for s in store.search(filters(q="s-old")).items] == ["S-OLD"]
        assert [s.sample_id for s in store.search(filters(q="herlev")).items] == ["S-OLD"]
        store.apply(event(harmonised(submission(2, sample="S-OLD", region="sjaelland")), 6))
        found = {(s.region.value, s.sample_id) for s in store.search(filters(q="s-old")).items}
        assert found == {("hovedstaden", "S-OLD"), ("sjaelland", "S-OLD")}
    finally:
        store.close()


def test_the_downgrade_to_0002_restores_the_pseudonym_key_while_pseudonyms_are_unique(
    catalogue: Catalogue,
) -> None:
    catalogue.apply(event(harmonised(submission(1, sample="S-DOWN", department="Herlev Hospital")), 1))
    config = alembic_config(catalogue.url, MIGRATIONS, SERVICE)
    catalogue.close()
    command.downgrade(config, "0002")
    engine = make_engine(catalogue.url)
    try:
        assert inspect(engine).get_pk_constraint("catalogue_samples")["constrained_columns"] == ["sample_id"]
        assert "region" not in {c["name"] for c in inspect(engine).get_columns("catalogue_files")}
    finally:
        engine.dispose()
    command.upgrade(config, "head")
    again = Catalogue(catalogue.url)
    try:
        detail = again.sample(Region.HOVEDSTADEN, "S-DOWN")
        assert detail is not None and len(detail.catalogue_files) == 4
        assert [s.sample_id for s in again.search(filters(q="herlev")).items] == ["S-DOWN"]
    finally:
        again.close()


def test_the_upgrade_from_0003_reads_the_naive_utc_times_as_the_instants_they_were(
    catalogue_url: str,
) -> None:
    """A catalogue whose times were written as naive UTC keeps every instant through 0004.

    On PostgreSQL the database's zone is set to Copenhagen first: a conversion that read the
    stored values in the session's zone would move every time by an hour or two.
    """
    command.upgrade(alembic_config(catalogue_url, MIGRATIONS, SERVICE), "0003")
    received = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)  # 1 April in Copenhagen
    sub = submission(1, sample="S-NAIVE", received_at=received)
    e = event(harmonised(sub), 90)
    record = fold([e])

    def naive(row: dict[str, object]) -> dict[str, object]:
        return {
            k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
            for k, v in row.items()
        }

    engine = make_engine(catalogue_url)
    old = MetaData()
    old.reflect(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            database = catalogue_url.rpartition("/")[2]
            conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone TO 'Europe/Copenhagen'")
        conn.execute(old.tables["catalogue_events"].insert(), naive(event_row(e)))
        conn.execute(old.tables["catalogue_submissions"].insert(), naive(submission_row(record)))
        conn.execute(old.tables["catalogue_files"].insert(), file_rows(record))
        conn.execute(
            old.tables["catalogue_samples"].insert(),
            naive(sample_row(submission_row(record), len(record.files), 1)),
        )
    engine.dispose()

    store = Catalogue(catalogue_url)
    try:
        store.migrate()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_indexer"})
            assert [d for d in compare_metadata(context, tables.metadata) if not _trigram_index(d)] == []
        detail = store.submission(sub.submission_id)
        assert detail is not None and detail.received_at == received
        assert [t.time for t in detail.timeline] == [e.time]
        [summary] = store.search(filters()).items
        assert (summary.received_at, summary.updated_at) == (received, e.time)
        assert summary.received_at.utcoffset() == timedelta(0)
        # The range filters and the cursor compare instants: the sample falls in April.
        assert [s.sample_id for s in store.search(filters(received_from="2026-04-01")).items] == ["S-NAIVE"]
        assert store.search(filters(received_to="2026-03-31")).items == []
        dumped = store.dump()["catalogue_events"][0]["time"]
        assert dumped == e.time.astimezone(UTC).isoformat()
    finally:
        store.close()


def test_the_downgrade_to_0003_gives_back_naive_utc(catalogue: Catalogue) -> None:
    received = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)
    catalogue.apply(event(harmonised(submission(1, sample="S-BACK", received_at=received)), 1))
    config = alembic_config(catalogue.url, MIGRATIONS, SERVICE)
    catalogue.close()
    command.downgrade(config, "0003")
    engine = make_engine(catalogue.url)
    try:
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT received_at FROM catalogue_samples").scalar_one()
        if isinstance(stored, str):  # SQLite hands back its text
            stored = datetime.fromisoformat(stored)
        assert stored == received.replace(tzinfo=None)
    finally:
        engine.dispose()
    command.upgrade(config, "head")
    again = Catalogue(catalogue.url)
    try:
        [summary] = again.search(filters()).items
        assert summary.received_at == received
    finally:
        again.close()


def test_the_archives_moves_and_recalls_show_beside_each_file(catalogue: Catalogue) -> None:
    """tier-moved and the recall events, matched to the catalogue's files by the body's path."""
    sub = submission()
    catalogue.apply(event(harmonised(sub), 5))
    path = f"hovedstaden/{sub.submission_id}/R1.fastq.gz"  # the factory's archive layout
    assert catalogue.tier_moved(sub.region, sub.sample_id, path, "cold") == 1
    expected = datetime(2026, 12, 3, 9, tzinfo=UTC)
    assert catalogue.recall_told(sub.region, sub.sample_id, path, "a" * 32, "STARTED", expected) == 1
    assert (
        catalogue.recall_told(
            sub.region, sub.sample_id, "hovedstaden/other/R1.fastq.gz", "b" * 32, "STARTED", expected
        )
        == 0
    )
    catalogue.apply(event(harmonised(sub), 5))  # a re-index keeps what the archive said
    detail = catalogue.sample(sub.region, sub.sample_id)
    assert detail is not None
    (cold,) = [f for f in detail.catalogue_files if f.name == "R1.fastq.gz"]
    assert cold.tier == "tape" and cold.recall is not None
    assert (cold.recall.recall_id, cold.recall.state, cold.recall.expected_at) == (
        "a" * 32,
        "STARTED",
        expected,
    )
    assert all(
        f.tier == "hot" and f.recall is None for f in detail.catalogue_files if f.name != "R1.fastq.gz"
    )
    catalogue.recall_told(sub.region, sub.sample_id, path, "a" * 32, "COMPLETED", None)
    detail = catalogue.sample(sub.region, sub.sample_id)
    assert detail is not None
    assert [(f.recall.state, f.recall.expected_at) for f in detail.catalogue_files if f.recall] == [
        ("COMPLETED", None)
    ]


def test_a_move_and_a_recall_told_before_the_file_is_known_converge(catalogue: Catalogue) -> None:
    """A replay reads the archive's topics and the intake's in any order: what the archive
    said of a body before the catalogue knew its file is there once the file arrives."""
    sub = submission()
    path = f"hovedstaden/{sub.submission_id}/R1.fastq.gz"
    assert catalogue.tier_moved(sub.region, sub.sample_id, path, "cold") == 0
    assert catalogue.recall_told(sub.region, sub.sample_id, path, "c" * 32, "SUBMITTED", None) == 0
    catalogue.apply(event(harmonised(sub), 5))
    detail = catalogue.sample(sub.region, sub.sample_id)
    assert detail is not None
    (cold,) = [f for f in detail.catalogue_files if f.name == "R1.fastq.gz"]
    assert cold.tier == "tape" and cold.recall is not None and cold.recall.state == "SUBMITTED"
    assert all(f.tier == "hot" for f in detail.catalogue_files if f.name != "R1.fastq.gz")
