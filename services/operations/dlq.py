"""Dead letters: reading the ``genomhub_dlq_*`` headers, choosing what to redrive, and the
ledger that keeps a dead letter from being redriven twice.

A dead letter is the original record (key, value, headers) with ``genomhub_dlq_*`` headers
added by ``shared.bus.dead_letter_headers``. Redriving it sends the original record back to
its source topic, so the consuming service sees exactly what it saw the first time.

Why a ledger in a consumer group. Redrive must not send the same dead letter twice across
invocations, but the dead letters must stay where they are (they are the evidence, kept for
90 days). The consumer group ``genomhub-dlq-redrive`` holds, per dead-letter partition, a
committed offset below which every dead letter has been redriven (the watermark), and in
the commit's metadata the offsets above it that were redriven one by one (``--id``). The
ledger is committed in the same Kafka transaction as the redriven records, so the records
and the ledger move together: either both are visible or neither is. A plain ``dlq list``
can then tell pending from redriven letters without any store outside Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.bus import DLQ_HEADER_PREFIX
from shared.envelope import Headers
from shared.paths import PathEscape, inside
from shared.tiers import NEEDS_RECALL
from shared.topics import DLQ_SUFFIX, REDRIVE_ID, dlq_name

REDRIVE_GROUP = REDRIVE_ID
LEDGER_FORMAT = "redriven-v1:"


class DlqError(ValueError):
    """A dead-letter request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class LetterId:
    """``<dlq topic>:<partition>:<offset>``: where a dead letter sits, which is its identity."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> LetterId:
        parts = text.rsplit(":", 2)
        try:
            if len(parts) != 3 or not parts[0]:
                raise ValueError
            letter = cls(parts[0], int(parts[1]), int(parts[2]))
        except ValueError:
            raise DlqError(f"{text!r} is not a dead-letter id <dlq topic>:<partition>:<offset>") from None
        if not letter.topic.endswith(DLQ_SUFFIX):
            raise DlqError(f"{text!r}: {letter.topic} is not a dead-letter topic (*{DLQ_SUFFIX})")
        if letter.partition < 0 or letter.offset < 0:
            raise DlqError(f"{text!r}: partition and offset must not be negative")
        return letter


def resolve_dlq_topic(name: str, dlq_topics: Sequence[str]) -> str:
    """``--topic`` may name the dead-letter topic, its source topic or the event name."""
    for candidate in (name, dlq_name(name), dlq_name(f"genomhub.{name}.v1")):
        if candidate in dlq_topics:
            return candidate
    raise DlqError(f"no dead-letter topic for {name!r}; they are {', '.join(sorted(dlq_topics))}")


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)

    @property
    def id(self) -> LetterId:
        return LetterId(self.topic, self.partition, self.offset)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", errors="replace")
        return None

    def dlq(self, name: str) -> str | None:
        return self.header(DLQ_HEADER_PREFIX + name)

    @property
    def source_topic(self) -> str | None:
        return self.dlq("topic")

    @property
    def source_partition(self) -> int | None:
        text = self.dlq("partition")
        return int(text) if text is not None and text.isdigit() else None

    @property
    def time(self) -> datetime:
        """When it was dead-lettered: the header the bus wrote, else the record's timestamp."""
        text = self.dlq("time")
        if text:
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def error_line(self) -> str:
        error = (self.dlq("error") or "").strip()
        return error.splitlines()[0] if error else ""

    def original_headers(self) -> Headers:
        """The headers the record had before it was dead-lettered, in their order."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]

    def redrive_target(self) -> tuple[str, int | None]:
        """Source topic and partition to send the original record back to."""
        topic = self.source_topic
        if not topic:
            raise DlqError(f"{self.id} has no {DLQ_HEADER_PREFIX}topic header; its source topic is unknown")
        if topic.endswith(DLQ_SUFFIX):
            raise DlqError(f"{self.id} names a dead-letter topic ({topic}) as its source")
        return topic, self.source_partition


@dataclass(frozen=True)
class Ledger:
    """What has been redriven on one dead-letter partition.

    Every offset below ``watermark`` and every offset in ``above`` has been redriven.
    """

    watermark: int = 0
    above: frozenset[int] = frozenset()

    def redriven(self, offset: int) -> bool:
        return offset < self.watermark or offset in self.above

    def with_redriven(self, offsets: Iterable[int], log_start: int = 0) -> Ledger:
        """The ledger after ``offsets`` were redriven; offsets the log no longer holds
        (below ``log_start``) count as done, so the watermark keeps up with retention."""
        done = set(self.above) | set(offsets)
        mark = max(self.watermark, log_start)
        while mark in done:
            mark += 1
        return Ledger(mark, frozenset(o for o in done if o >= mark))

    def metadata(self) -> str:
        """The ``above`` set as ranges (``5-7,9``): compact in the commit's metadata."""
        ranges: list[str] = []
        for first, last in _runs(sorted(self.above)):
            ranges.append(str(first) if first == last else f"{first}-{last}")
        return LEDGER_FORMAT + ",".join(ranges)

    @classmethod
    def parse(cls, offset: int, metadata: str) -> Ledger:
        """The ledger from a committed offset (-1: none) and its metadata."""
        if offset < 0:
            return cls()
        if not metadata:
            return cls(offset)
        if not metadata.startswith(LEDGER_FORMAT):
            raise DlqError(f"the redrive ledger's metadata {metadata[:60]!r} is not {LEDGER_FORMAT!r}")
        above: set[int] = set()
        body = metadata[len(LEDGER_FORMAT) :]
        try:
            for part in filter(None, body.split(",")):
                first, _, last = part.partition("-")
                above.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise DlqError(f"the redrive ledger's metadata {metadata[:60]!r} is corrupt") from None
        return cls(offset, frozenset(o for o in above if o >= offset))


def _runs(offsets: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    return runs


LIST_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "time",
    "service",
    "code",
    "source",
    "state",
    "ce_id",
    "subject",
    "error",
)


@dataclass
class Selection:
    """The outcome of choosing dead letters for a redrive."""

    send: list[DeadLetter] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)
    unsendable: list[tuple[DeadLetter, str]] = field(default_factory=list)


def select(
    letters: Sequence[DeadLetter],
    ledgers: dict[tuple[str, int], Ledger],
    ids: Sequence[LetterId] = (),
) -> Selection:
    """The letters to redrive: the named ones, or (no ids) every one not yet redriven.

    A named id that does not exist is an error, not a silent no-op: the operator asked for a
    specific record. A named letter already redriven is reported, not sent again.
    """
    by_id = {letter.id: letter for letter in letters}
    missing = [str(i) for i in ids if i not in by_id]
    if missing:
        raise DlqError(f"no such dead letter: {', '.join(missing)}")
    chosen = [by_id[i] for i in dict.fromkeys(ids)] if ids else list(letters)
    selection = Selection()
    for letter in chosen:
        if ledgers.get((letter.topic, letter.partition), Ledger()).redriven(letter.offset):
            if ids:
                selection.already.append(letter)
            continue
        try:
            letter.redrive_target()
        except DlqError as exc:
            selection.unsendable.append((letter, str(exc)))
            continue
        selection.send.append(letter)
    return selection


def bodies_named(letter: DeadLetter, archive: str) -> list[str]:
    """The archived bodies the letter's event names: every string in its JSON value that is
    a URL inside ``archive`` (the hot tier, where every event names a body by its intake
    URL). Generic over the event types, so a new event that reads bodies needs nothing here;
    a value that is not JSON names none."""
    try:
        value = json.loads(letter.value or b"")
    except (ValueError, RecursionError):  # a value nested past the parser's depth names none
        return []
    named: list[str] = []
    for text in _strings(value):
        try:
            inside(archive, text)
        except PathEscape:
            continue
        if text not in named:
            named.append(text)
    return named


def _strings(value: object) -> Iterator[str]:
    """Every string in a parsed JSON value, walked with a stack of its own: however deep a
    hostile letter nests, the walk needs no recursion."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


@dataclass
class TapeWait:
    """The pending ``needs_recall`` letters: those whose bodies are all readable again (a
    recall staged them), and those still waiting, with the bodies they wait for."""

    staged: list[DeadLetter] = field(default_factory=list)
    waiting: list[tuple[DeadLetter, list[str]]] = field(default_factory=list)


def staged_letters(
    letters: Sequence[DeadLetter],
    ledgers: dict[tuple[str, int], Ledger],
    archive: str,
    readable: Callable[[str], bool],
) -> TapeWait:
    """Sort the letters refused because their bodies were on tape into those that can go
    back now and those that cannot. Only ``needs_recall`` letters not yet redriven count; one
    that names no body (it cannot be checked) waits, rather than go back to fail again."""
    wait = TapeWait()
    for letter in letters:
        if letter.dlq("code") != NEEDS_RECALL:
            continue
        if ledgers.get((letter.topic, letter.partition), Ledger()).redriven(letter.offset):
            continue
        bodies = bodies_named(letter, archive)
        cold = [url for url in bodies if not readable(url)]
        if bodies and not cold:
            wait.staged.append(letter)
        else:
            wait.waiting.append((letter, cold))
    return wait


def list_rows(
    letters: Sequence[DeadLetter], ledgers: dict[tuple[str, int], Ledger]
) -> list[tuple[str, int, int, str, str, str, str, str, str, str, str]]:
    """One row per dead letter for ``dlq list`` (columns: ``LIST_COLUMNS``)."""
    rows = []
    for letter in letters:
        state = (
            "redriven"
            if ledgers.get((letter.topic, letter.partition), Ledger()).redriven(letter.offset)
            else "pending"
        )
        error = letter.error_line
        rows.append(
            (
                letter.topic,
                letter.partition,
                letter.offset,
                letter.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                letter.dlq("service") or "?",
                letter.dlq("code") or "?",
                f"{letter.source_topic or '?'}:{letter.dlq('partition') or '?'}:{letter.dlq('offset') or '?'}",
                state,
                letter.header("ce_id") or "-",
                letter.header("ce_subject") or "-",
                error if len(error) <= 100 else error[:99] + "…",
            )
        )
    return rows


def format_letter(letter: DeadLetter) -> str:
    """``dlq show``: the headers one per line, then the value (indented if it is JSON)."""
    lines = [f"dead letter {letter.id}", f"record time {_ms_iso(letter.timestamp_ms)}"]
    lines.append(f"key {_text(letter.key)}")
    lines.append("headers:")
    width = max((len(k) for k, _ in letter.headers), default=0)
    for name, value in letter.headers:
        text = _text(value).replace("\n", "\n" + " " * (width + 4))
        lines.append(f"  {name.ljust(width)}  {text}")
    lines.append("value:")
    lines.append(_pretty(letter.value))
    return "\n".join(lines)


def _ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _text(raw: bytes | None) -> str:
    if raw is None:
        return "(null)"
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)


def _pretty(value: bytes | None) -> str:
    if value is None:
        return "(null)"
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False, sort_keys=False)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _text(value)
