"""The hub's side of one spoke's feed: numbering, signing, the state hash and checkpoints.

Pure: the app produces the :class:`Record` values this returns and reports each one's
offset back (:meth:`FeedWriter.delivered`), so a checkpoint names the hub's offsets.

The writer keeps the projected state it has published (one digest per sample key), so a
body that did not change is not published again, a withdrawal of a sample the spoke never
had is not published at all, and each checkpoint's hash is the product kept up to date entry
by entry. A checkpoint is due every ``every`` entries or ``interval`` seconds after the first
entry it would cover, whichever comes first; the app asks :meth:`FeedWriter.due`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka.partitioner import murmur2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.events import Region
from shared.feed import (
    Checkpoint,
    FeedEntry,
    FeedRefusal,
    HubKey,
    HubKeyError,
    Opened,
    SampleBody,
    SampleRecord,
    SampleSummary,
    StateHash,
    Withdrawal,
    entry_digest,
    entry_key,
    key_id,
    open_record,
    public_key_text,
    seal,
)
from shared.topics import feed_topic


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the Java client)."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes
    value: bytes
    seq: int


@dataclass(frozen=True)
class Stored:
    """A record of the feed as the hub's cluster holds it, read back at start."""

    partition: int
    offset: int
    value: bytes | None


@dataclass
class FeedWriter:
    region: Region
    key: Ed25519PrivateKey
    partitions: int
    every: int = 1000
    interval: float = 1.0
    seq: int = 0
    revision: int = 0
    upto: int = 0
    """The last entry the newest checkpoint covers: what a spoke can show at best."""
    _bodies: dict[str, SampleBody] = field(default_factory=dict)
    _digests: dict[str, str] = field(default_factory=dict)
    _hash: StateHash = field(default_factory=StateHash)
    _heads: dict[int, int] = field(default_factory=dict)
    _offsets: dict[int, int] = field(default_factory=dict)
    _since_checkpoint: int = 0
    _first_uncovered: datetime | None = None

    @property
    def feed(self) -> str:
        return feed_topic(self.region)

    @classmethod
    def restore(
        cls,
        region: Region,
        key: Ed25519PrivateKey,
        partitions: int,
        stored: Iterable[Stored],
        every: int = 1000,
        interval: float = 1.0,
    ) -> FeedWriter:
        """The writer that wrote ``stored`` (its feed, read from the start), to go on from.

        The feed is the publisher's state: its sequence number, revision, and each sample's
        last entry (compaction keeps exactly that, withdrawals included, since they are signed
        entries and not Kafka's null tombstones). A restarted publisher so continues the
        numbering a spoke checks, and sends no entry for a body the spoke has already.
        Entries after the last checkpoint make one due at once. A feed whose partitions are
        signed by another key than ``key`` (after any rollover it announced) is not this key's
        to go on: :class:`HubKeyError`.
        """
        writer = cls(region, key, partitions, every, interval)
        latest: dict[str, tuple[int, Opened]] = {}
        signers: dict[int, tuple[int, str]] = {}
        checkpoint_seq = 0
        for record in stored:
            if record.value is None:
                continue
            opened = open_record(record.value)
            entry = opened.entry
            if entry.feed != writer.feed:
                raise FeedRefusal("wrong_feed", f"entry {entry.seq} of {entry.feed} is on {writer.feed}")
            writer.seq = max(writer.seq, entry.seq)
            writer._heads[record.partition] = max(writer._heads.get(record.partition, 0), entry.seq)
            writer.delivered(record.partition, record.offset)
            signer = entry.body.key_id if isinstance(entry.body, HubKey) else entry.signed_by
            if entry.seq > signers.get(record.partition, (0, ""))[0]:
                signers[record.partition] = (entry.seq, signer)
            if isinstance(entry.body, Checkpoint):
                if entry.body.revision > writer.revision:
                    writer.revision, writer.upto, checkpoint_seq = (
                        entry.body.revision,
                        entry.body.upto,
                        entry.seq,
                    )
            elif not isinstance(entry.body, HubKey) and entry.seq > latest.get(entry.key, (0, opened))[0]:
                latest[entry.key] = (entry.seq, opened)
        ours = key_id(key.public_key())
        for partition, (_, signer) in sorted(signers.items()):
            if signer != ours:
                raise HubKeyError(
                    f"{writer.feed}[{partition}] is signed by hub key {signer}, not by this key ({ours}): a "
                    "spoke would refuse every entry after it. Configure the key that signs the feed, and change "
                    "keys only by a rollover, which that key announces"
                )
        for key_name, (seq, opened) in latest.items():
            body = opened.entry.body
            if isinstance(body, SampleSummary | SampleRecord):
                writer._bodies[key_name] = body
                writer._digests[key_name] = opened.digest
                writer._hash.add(key_name, opened.digest)
            if seq > checkpoint_seq:
                writer._since_checkpoint += 1
        if writer._since_checkpoint:
            writer._first_uncovered = datetime.min.replace(tzinfo=UTC)
        return writer

    @property
    def samples(self) -> int:
        return len(self._digests)

    def state_hash(self) -> str:
        return self._hash.hexdigest()

    def _entry(self, body: SampleBody | Checkpoint | HubKey, now: datetime) -> FeedEntry:
        self.seq += 1
        return FeedEntry(
            feed=self.feed,
            key=entry_key(body),
            seq=self.seq,
            signed_by=key_id(self.key.public_key()),
            issued_at=now,
            body=body,
        )

    def _record(self, entry: FeedEntry, partition: int) -> Record:
        self._heads[partition] = entry.seq
        return Record(partition, entry.key.encode(), seal(entry, self.key), entry.seq)

    def publish(self, body: SampleBody, now: datetime) -> Record | None:
        """The signed entry that brings the spoke to ``body``, or None if it has it already."""
        key = entry_key(body)
        if isinstance(body, Withdrawal):
            if key not in self._bodies:
                return None
        elif self._bodies.get(key) == body:
            return None
        entry = self._entry(body, now)
        digest = entry_digest(entry.model_dump(mode="json"))
        old = self._digests.pop(key, None)
        if old is not None:
            self._hash.remove(key, old)
        if isinstance(body, Withdrawal):
            del self._bodies[key]
        else:
            self._bodies[key] = body
            self._digests[key] = digest
            self._hash.add(key, digest)
        self._since_checkpoint += 1
        self._first_uncovered = self._first_uncovered or now
        return self._record(entry, partition_of(key, self.partitions))

    def delivered(self, partition: int, offset: int) -> None:
        """The hub's cluster stored a record of this feed at ``offset``."""
        self._offsets[partition] = max(self._offsets.get(partition, 0), offset + 1)

    def due(self, now: datetime) -> bool:
        if self._since_checkpoint == 0 or self._first_uncovered is None:
            return False
        return (
            self._since_checkpoint >= self.every
            or (now - self._first_uncovered).total_seconds() >= self.interval
        )

    def checkpoint(self, now: datetime) -> Record:
        """The signed checkpoint of everything published so far (the app produces it once the
        entries it covers are delivered, so its offsets are theirs)."""
        self.revision += 1
        self.upto = self.seq
        body = Checkpoint(
            revision=self.revision,
            upto=self.seq,
            heads=dict(self._heads),
            offsets=dict(self._offsets),
            entries=len(self._digests),
            state_hash=self._hash.hexdigest(),
        )
        self._since_checkpoint, self._first_uncovered = 0, None
        entry = self._entry(body, now)
        return self._record(entry, partition_of(entry.key, self.partitions))

    def roll_over(self, new_key: Ed25519PrivateKey, now: datetime) -> list[Record]:
        """One announcement per partition, signed by the old key; after each, that partition's
        entries are signed by the new one, so a spoke never meets the new key before its news."""
        public = new_key.public_key()
        records = []
        for partition in range(self.partitions):
            body = HubKey(key_id=key_id(public), public_key=public_key_text(public), partition=partition)
            records.append(self._record(self._entry(body, now), partition))
        self.key = new_key
        return records
