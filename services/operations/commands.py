"""``genomhub replay`` and ``genomhub dlq``: the operators' tools on the real broker.

The decisions live in the pure modules (``replay``, ``dlq``, ``table``); this module only
fetches the facts from Kafka (committed offsets, log bounds, group members, dead letters)
and carries the decisions out. How each is done on the broker (the admin API, a consumer
committing for a group from outside it, the transactional send with the ledger's offsets)
is ``shared.bus``'s, beside the consume loop: no Kafka client is made here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from services.operations import dlq as dl
from services.operations import replay as rp
from services.operations.table import format_table
from shared.bus import (
    GroupNotEmpty,
    OutgoingRecord,
    OutsideLog,
    ReadTimeout,
    commit_group_offsets,
    committed_offsets,
    group_members,
    log_bounds,
    partitions_of,
    read_record,
    read_records,
    send_with_offsets,
    transactional_producer,
)
from shared.config import TierSettings, TopicSettings
from shared.envelope import normalise_headers
from shared.kafka import KafkaAccess, KafkaAccessError, kafka_access
from shared.tiers import ArchiveTiers, NeedsRecall
from shared.topics import DLQ_SUFFIX, OPERATOR, SERVICES, all_topics, consumer_group

READ_TIMEOUT_S = 30.0


def _event_topics(settings: TopicSettings) -> list[str]:
    return [t.name for t in all_topics(settings.partitions) if not t.name.endswith(DLQ_SUFFIX)]


def _dlq_topics(settings: TopicSettings) -> list[str]:
    return [t.name for t in all_topics(settings.partitions) if t.name.endswith(DLQ_SUFFIX)]


def _operator() -> KafkaAccess:
    """The operators' tools reach the broker as the operator principal."""
    return kafka_access(OPERATOR)


def _run(coro: Any) -> Any:
    """Run one command's coroutine; broker failures become a clear one-line error."""
    try:
        return asyncio.run(coro)
    except (rp.ReplayError, dl.DlqError, KafkaAccessError) as exc:
        raise click.ClickException(str(exc)) from exc
    except KafkaError as exc:
        raise click.ClickException(f"Kafka: {type(exc).__name__}: {exc}") from exc


# -- replay ----------------------------------------------------------------------------------


@dataclass
class ReplayFacts:
    group: str
    state: str
    members: list[tuple[str, str]]
    partitions: list[TopicPartition]
    committed: dict[tuple[str, int], int]
    earliest: dict[tuple[str, int], int]
    latest: dict[tuple[str, int], int]
    by_time: dict[tuple[str, int], int | None] | None


async def _replay_facts(settings: TopicSettings, service: str, target: rp.Target) -> ReplayFacts:
    access = kafka_access(OPERATOR)
    group = consumer_group(service)
    state, members = await group_members(access, group)
    offsets = await committed_offsets(access, group)
    committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    topics = rp.consumed_topics(service, [t for t, _ in committed], _event_topics(settings))
    partitions: list[TopicPartition] = []
    for topic in topics:
        found = await partitions_of(access, topic)
        if not found:
            raise rp.ReplayError(f"topic {topic} does not exist on {access.bootstrap}")
        partitions += found
    earliest, latest, found_times = await log_bounds(
        access, partitions, target.millis if isinstance(target, rp.AtTime) else None
    )
    by_time = None if found_times is None else {(tp.topic, tp.partition): o for tp, o in found_times.items()}
    return ReplayFacts(
        group,
        state,
        members,
        partitions,
        committed,
        {(tp.topic, tp.partition): o for tp, o in earliest.items()},
        {(tp.topic, tp.partition): o for tp, o in latest.items()},
        by_time,
    )


async def _commit_offsets(
    access: KafkaAccess, group: str, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Commit the replay's offsets for the stopped ``group``, read back from the broker."""
    try:
        return await commit_group_offsets(access, group, offsets)
    except GroupNotEmpty as exc:
        raise rp.ReplayError(
            f"the broker rejected the new offsets: a member joined {group} after the check; "
            "stop the service and run the replay again"
        ) from exc


async def _replay(service: str, target: rp.Target, dry_run: bool) -> None:
    settings = TopicSettings()
    facts = await _replay_facts(settings, service, target)
    refusal = rp.live_members_refusal(facts.group, facts.state, facts.members)
    if refusal and not dry_run:
        raise rp.ReplayError(f"refusing to replay: {refusal}")
    rows = rp.plan(
        target,
        [(tp.topic, tp.partition) for tp in facts.partitions],
        facts.committed,
        facts.earliest,
        facts.latest,
        facts.by_time,
    )
    click.echo(f"replay of {service} (consumer group {facts.group}, state {facts.state or 'unknown'})")
    click.echo(format_table(("topic", "partition", "current", "new", "change"), rp.plan_rows(rows)))
    new = {TopicPartition(r.topic, r.partition): r.new for r in rows if r.new is not None}
    if dry_run:
        click.echo("dry run: nothing committed")
        if refusal:
            click.echo(f"note: a real run would refuse now: {refusal}")
        return
    if not new:
        click.echo("nothing to commit")
        return
    committed = await _commit_offsets(kafka_access(OPERATOR), facts.group, new)
    wrong = {tp: (o, committed.get(tp)) for tp, o in new.items() if committed.get(tp) != o}
    if wrong:
        raise rp.ReplayError(f"the broker holds other offsets than committed: {wrong}")
    click.echo(f"committed {len(new)} offset(s) for {facts.group}; start {service} to replay")


@click.command("replay")
@click.option("--service", required=True, type=click.Choice(SERVICES), help="The service to replay.")
@click.option("--to-earliest", is_flag=True, help="Restart at the oldest retained record.")
@click.option("--to-time", metavar="ISO-TIME", help="Restart at the first record at or after this time.")
@click.option(
    "--to-offset",
    "to_offset",
    multiple=True,
    metavar="[TOPIC:]P:O",
    help="Restart partition P at offset O (repeatable; more may follow as arguments).",
)
@click.argument("more_offsets", nargs=-1, metavar="[[TOPIC:]P:O]...")
@click.option("--dry-run", is_flag=True, help="Print the plan, commit nothing.")
def replay(
    service: str,
    to_earliest: bool,
    to_time: str | None,
    to_offset: tuple[str, ...],
    more_offsets: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Reset a stopped service's consumer group so it consumes its topics again.

    Prints the current and new offset of every partition. Refuses while the group has
    live members: stop the service first. A time without an offset is Copenhagen time.
    """
    chosen = sum([to_earliest, to_time is not None, bool(to_offset)])
    if chosen != 1:
        raise click.UsageError("give exactly one of --to-earliest, --to-time, --to-offset")
    if more_offsets and not to_offset:
        raise click.UsageError(f"unexpected argument(s) {' '.join(more_offsets)}")
    target: rp.Target
    try:
        if to_earliest:
            target = rp.Earliest()
        elif to_time is not None:
            target = rp.AtTime(rp.parse_time(to_time))
        else:
            target = rp.AtOffsets(tuple(rp.parse_offset_specs([*to_offset, *more_offsets])))
    except rp.ReplayError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(_replay(service, target, dry_run))


# -- dead letters ----------------------------------------------------------------------------


async def _read_letters(
    access: KafkaAccess, topics: Sequence[str]
) -> tuple[list[dl.DeadLetter], dict[tuple[str, int], int]]:
    """Every dead letter on ``topics`` up to their current end, and each partition's log start."""
    partitions: list[TopicPartition] = []
    for topic in topics:
        partitions += await partitions_of(access, topic)
    if not partitions:
        return [], {}
    try:
        records = await read_records(access, topics, READ_TIMEOUT_S)
    except ReadTimeout as exc:
        raise dl.DlqError(str(exc)) from exc
    starts, _, _ = await log_bounds(access, partitions)
    letters = sorted((_letter(r) for r in records), key=lambda x: (x.topic, x.partition, x.offset))
    return letters, {(tp.topic, tp.partition): o for tp, o in starts.items()}


def _letter(record: Any) -> dl.DeadLetter:
    return dl.DeadLetter(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.key,
        record.value,
        normalise_headers(record.headers),
    )


async def _ledgers(
    access: KafkaAccess, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], dl.Ledger]:
    if not partitions:
        return {}
    found = await committed_offsets(access, dl.REDRIVE_GROUP, [TopicPartition(t, p) for t, p in partitions])
    return {
        (tp.topic, tp.partition): dl.Ledger.parse(meta.offset, meta.metadata or "")
        for tp, meta in found.items()
    }


def _summary(
    letters: Sequence[dl.DeadLetter], ledgers: dict[tuple[str, int], dl.Ledger], topics: Sequence[str]
) -> str:
    lines = []
    for topic in topics:
        mine = [x for x in letters if x.topic == topic]
        done = sum(1 for x in mine if ledgers.get((x.topic, x.partition), dl.Ledger()).redriven(x.offset))
        lines.append(f"{topic}: {len(mine)} dead letter(s), {len(mine) - done} pending, {done} redriven")
    return "\n".join(lines)


async def _list(topic: str | None, pending_only: bool) -> None:
    settings = TopicSettings()
    access = _operator()
    topics = [dl.resolve_dlq_topic(topic, _dlq_topics(settings))] if topic else _dlq_topics(settings)
    letters, _ = await _read_letters(access, topics)
    ledgers = await _ledgers(access, sorted({(x.topic, x.partition) for x in letters}))
    click.echo(_summary(letters, ledgers, topics))
    if pending_only:
        letters = [
            x for x in letters if not ledgers.get((x.topic, x.partition), dl.Ledger()).redriven(x.offset)
        ]
    if letters:
        click.echo(format_table(dl.LIST_COLUMNS, dl.list_rows(letters, ledgers)))


async def _show(letter_id: dl.LetterId) -> None:
    access = _operator()
    tp = TopicPartition(letter_id.topic, letter_id.partition)
    if tp not in await partitions_of(access, letter_id.topic):
        raise dl.DlqError(f"no such dead letter: {letter_id} (no such topic or partition)")
    try:
        record = await read_record(access, tp, letter_id.offset, READ_TIMEOUT_S)
    except OutsideLog as exc:
        raise dl.DlqError(f"no such dead letter: {letter_id} ({exc})") from exc
    letter = _letter(record)
    ledger = (await _ledgers(access, [(tp.topic, tp.partition)])).get((tp.topic, tp.partition), dl.Ledger())
    click.echo(dl.format_letter(letter))
    click.echo(f"state: {'redriven' if ledger.redriven(letter.offset) else 'pending'}")


def _original_record(letter: dl.DeadLetter) -> OutgoingRecord:
    """The record the dead letter was, addressed to where it came from."""
    topic, partition = letter.redrive_target()
    return OutgoingRecord(topic, letter.value, letter.key, partition, letter.original_headers())


def _staged_only(
    letters: Sequence[dl.DeadLetter], ledgers: dict[tuple[str, int], dl.Ledger]
) -> list[dl.LetterId]:
    """The pending ``needs_recall`` letters whose bodies a recall has staged (read where the
    tiers say they are now); those still waiting are named with the bodies they wait for."""
    tiers = ArchiveTiers.of(TierSettings())

    def readable(url: str) -> bool:
        try:
            tiers.locate(url)
        except (NeedsRecall, FileNotFoundError):
            return False
        return True

    wait = dl.staged_letters(letters, ledgers, tiers.hot, readable)
    for letter, cold in wait.waiting:
        click.echo(f"still waiting for tape: {letter.id} ({', '.join(cold) or 'names no archived body'})")
    return [letter.id for letter in wait.staged]


async def _redrive(ids: Sequence[dl.LetterId], topics: Sequence[str], staged: bool = False) -> None:
    """Send the chosen dead letters' original records back, and advance the ledger, in one
    transaction. The transactional producer starts before the ledger is read, fencing any
    redrive still in flight: two operators redriving at once cannot both send the same
    dead letter. ``staged``: only the letters refused for bodies on tape that a recall has
    staged since."""
    access = _operator()
    async with transactional_producer(access, dl.REDRIVE_GROUP) as producer:
        letters, starts = await _read_letters(access, topics)
        ledgers = await _ledgers(access, sorted(starts))
        if staged:
            ids = _staged_only(letters, ledgers)
            if not ids:
                click.echo("nothing to redrive")
                return
        selection = dl.select(letters, ledgers, ids)
        for letter in selection.already:
            click.echo(f"already redriven, not sent again: {letter.id}")
        for _, reason in selection.unsendable:
            click.echo(f"cannot redrive: {reason}")
        if not selection.send:
            click.echo("nothing to redrive")
            return
        records = [_original_record(letter) for letter in selection.send]
        advanced: dict[TopicPartition, OffsetAndMetadata] = {}
        for (topic, part), ledger in ledgers.items():
            offsets = [x.offset for x in selection.send if (x.topic, x.partition) == (topic, part)]
            if offsets:
                after = ledger.with_redriven(offsets, starts[(topic, part)])
                advanced[TopicPartition(topic, part)] = OffsetAndMetadata(after.watermark, after.metadata())
        metas = await send_with_offsets(producer, records, advanced, dl.REDRIVE_GROUP)
    for letter, meta in zip(selection.send, metas, strict=True):
        click.echo(
            f"redriven {letter.id} -> {meta.topic}:{meta.partition}:{meta.offset} "
            f"ce_id={letter.header('ce_id') or '-'} subject={letter.header('ce_subject') or '-'}"
        )
    click.echo(f"redrove {len(metas)} dead letter(s)")


@click.group("dlq")
def dlq() -> None:
    """Dead letters: records a service could not decode or process, kept for 90 days."""


@dlq.command("list")
@click.option("--topic", help="One dead-letter topic (or its source topic, or the event name).")
@click.option("--pending", is_flag=True, help="Only dead letters not yet redriven.")
def dlq_list(topic: str | None, pending: bool) -> None:
    """Count the dead letters of each topic and print one line per dead letter."""
    _run(_list(topic, pending))


@dlq.command("show")
@click.option("--id", "letter_id", required=True, metavar="DLQ-TOPIC:PARTITION:OFFSET")
def dlq_show(letter_id: str) -> None:
    """Print one dead letter: its headers and its value (indented if JSON)."""
    try:
        parsed = dl.LetterId.parse(letter_id)
    except dl.DlqError as exc:
        raise click.BadParameter(str(exc), param_hint="--id") from exc
    _run(_show(parsed))


@dlq.command("redrive")
@click.option("--id", "ids", multiple=True, metavar="DLQ-TOPIC:PARTITION:OFFSET", help="Repeatable.")
@click.option("--topic", help="Every pending dead letter of this topic.")
@click.option("--all", "everything", is_flag=True, help="Every pending dead letter of every topic.")
@click.option(
    "--staged",
    is_flag=True,
    help="Every pending needs_recall dead letter whose bodies a recall has staged since "
    "(with --topic: of that topic).",
)
def dlq_redrive(ids: tuple[str, ...], topic: str | None, everything: bool, staged: bool) -> None:
    """Send dead letters' original records (original key, value and headers) back to their
    source topic. A dead letter is redriven at most once: a ledger kept in the consumer
    group genomhub-dlq-redrive, committed with the records, remembers what was sent.

    An event refused because its bodies were on tape (code needs_recall) goes back with
    --staged once the archive announced them staged (file-staged): it is then read as if it
    had never waited, and one whose bodies are still on tape stays where it is."""
    if staged and (ids or everything):
        raise click.UsageError("--staged chooses the letters itself; give it alone or with --topic")
    if not staged and sum([bool(ids), topic is not None, everything]) != 1:
        raise click.UsageError("give exactly one of --id (repeatable), --topic, --all, --staged")
    settings = TopicSettings()
    try:
        letter_ids = [dl.LetterId.parse(i) for i in ids]
        if letter_ids:
            topics = sorted({i.topic for i in letter_ids})
            unknown = [t for t in topics if t not in _dlq_topics(settings)]
            if unknown:
                raise dl.DlqError(f"not a registered dead-letter topic: {', '.join(unknown)}")
        elif topic is not None:
            topics = [dl.resolve_dlq_topic(topic, _dlq_topics(settings))]
        else:
            topics = _dlq_topics(settings)
    except dl.DlqError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(_redrive(letter_ids, topics, staged))
