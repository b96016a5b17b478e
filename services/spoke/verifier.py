"""What a spoke believes of its feed: only whole, verified revisions, and never an older one.

CernVM-FS's lessons, on Kafka. A spoke verifies every record against the hub key it pinned
(or one the hub rolled over to in a signed entry), holds verified entries aside, and shows a
new revision only when a signed checkpoint names it and the spoke can prove it holds all of
it: every partition has reached the checkpoint's head there, and the state hash of what it
holds at that point equals the checkpoint's. Until then it keeps showing the revision it had.
A checkpoint at or below the visible revision is a rollback and is refused; so are a record
out of its partition's order, a record seen before, a record of another feed, a forged
signature, a key retired by a rollover, and an unsigned deletion. Each refusal names its
reason (``FeedRefusal.reason``) for the spoke's report, and changes nothing.

Pure: no Kafka here. The spoke's consumer hands each record's partition, key and value to
:meth:`FeedVerifier.receive`, and applies the :class:`Revision` it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.events import Region
from shared.feed import (
    Checkpoint,
    FeedEntry,
    FeedRefusal,
    HubKey,
    Listed,
    Opened,
    StateHash,
    Withdrawal,
    entry_key,
    key_id,
    open_record,
    public_key_from_text,
)
from shared.topics import feed_topic


@dataclass(frozen=True)
class Held:
    """A sample's entry as the spoke holds it."""

    seq: int
    digest: str
    body: Listed


@dataclass(frozen=True)
class Revision:
    """A revision the spoke has proven whole: show ``samples`` (the full state) from now on.

    ``changed`` and ``removed`` are the keys that differ from the previous revision, for a
    store that applies changes rather than replacing its copy."""

    revision: int
    upto: int
    state_hash: str
    offsets: dict[int, int]
    samples: dict[str, Held]
    changed: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    """What one record did: a revision now shown, and checkpoints refused on its account (a
    record can complete a checkpoint whose hash then does not hold; the record stays taken)."""

    revision: Revision | None = None
    refused: tuple[FeedRefusal, ...] = ()


@dataclass
class _Partition:
    signer: str
    """The key id that signs this partition's next entries: the pinned one until a rollover."""
    last_seq: int = 0
    retired: set[str] = field(default_factory=set)


@dataclass
class FeedVerifier:
    """One spoke's reading of its feed, from empty (a new spoke, or one rebuilding)."""

    region: Region
    pinned: Ed25519PublicKey
    floor: int = 0
    """The revision the spoke's store shows already: a spoke that restarts reads its feed
    again from the start, proves that revision again, and accepts nothing older."""
    visible_revision: int = 0
    visible_upto: int = 0
    samples: dict[str, Held] = field(default_factory=dict)
    _hash: StateHash = field(default_factory=StateHash)
    _keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    _partitions: dict[int, _Partition] = field(default_factory=dict)
    _pending: dict[int, Opened] = field(default_factory=dict)
    """Verified sample entries beyond the visible revision, by sequence number."""
    _checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    _seen: dict[int, str] = field(default_factory=dict)
    """Sequence number -> digest of every entry taken since the start: what tells a replay
    (the very entry again) from a reordering (another entry out of place)."""

    def __post_init__(self) -> None:
        self._keys[key_id(self.pinned)] = self.pinned

    @property
    def feed(self) -> str:
        return feed_topic(self.region)

    def state_hash(self) -> str:
        return self._hash.hexdigest()

    # -- records --------------------------------------------------------------------------

    def _lane(self, partition: int) -> _Partition:
        return self._partitions.setdefault(partition, _Partition(key_id(self.pinned)))

    def receive(
        self, partition: int, key: bytes | None, value: bytes | Opened | FeedRefusal | None
    ) -> Outcome:
        """Take one record of the feed (its value, or what :meth:`opened` made of it).

        Raises :class:`FeedRefusal` for a record not to be believed, having changed nothing.
        """
        if isinstance(value, FeedRefusal):
            raise value
        opened = value if isinstance(value, Opened) else open_record(value)
        entry, body = opened.entry, opened.entry.body
        self._check_place(partition, key, opened)
        self._check_signature(partition, opened)
        if isinstance(body, Checkpoint) and (
            body.revision <= self.visible_revision
            or body.upto < self.visible_upto
            or body.revision < self.floor
        ):
            raise FeedRefusal(
                "rollback",
                f"checkpoint of revision {body.revision} up to entry {body.upto}; the revision shown is "
                f"{max(self.visible_revision, self.floor)}, up to entry {self.visible_upto}",
            )
        if not isinstance(body, Checkpoint | HubKey) and entry.seq <= self.visible_upto:
            raise FeedRefusal(
                "reordered", f"entry {entry.seq} is inside revision {self.visible_revision}, already whole"
            )
        lane = self._lane(partition)
        lane.last_seq = entry.seq
        self._seen[entry.seq] = opened.digest
        if isinstance(body, HubKey):
            lane.retired.add(lane.signer)
            lane.signer = body.key_id
            self._keys[body.key_id] = public_key_from_text(body.public_key)
        elif isinstance(body, Checkpoint):
            self._checkpoints[body.revision] = body
        else:
            self._pending[entry.seq] = opened
        return self._switch()

    def opened(self, values: Sequence[bytes | None], checks: Executor) -> list[Opened | FeedRefusal]:
        """A poll batch's values opened, their signatures checked ahead of :meth:`receive` on
        ``checks`` (Ed25519's check releases the GIL, so a first sync of a whole feed checks
        on the other cores while this thread parses the next record) against the keys known
        now. What :meth:`receive` decides is unchanged: it still asks, in order, which key
        must have signed each record, and checks again whatever was not found good for that
        key here."""
        keys = dict(self._keys)
        opened: list[Opened | FeedRefusal] = []
        pending = []
        for value in values:
            try:
                record = open_record(value)
            except FeedRefusal as refusal:
                opened.append(refusal)
                continue
            opened.append(record)
            pending.append(checks.submit(record.check_ahead, keys))
        for done in pending:
            done.result()
        return opened

    def _check_place(self, partition: int, key: bytes | None, opened: Opened) -> None:
        entry = opened.entry
        if entry.feed != self.feed:
            raise FeedRefusal("wrong_feed", f"entry {entry.seq} is of {entry.feed}, not {self.feed}")
        expected = entry_key(entry.body)
        if entry.key != expected or key != expected.encode():
            raise FeedRefusal(
                "wrong_key",
                f"entry {entry.seq} is keyed {key!r} and names {entry.key!r}; its body's key is {expected!r}",
            )
        if isinstance(entry.body, HubKey) and entry.body.partition != partition:
            raise FeedRefusal(
                "wrong_partition",
                f"the rollover of entry {entry.seq} is for partition {entry.body.partition}, read on {partition}",
            )
        seen = self._seen.get(entry.seq)
        if seen == opened.digest:
            raise FeedRefusal("replayed", f"entry {entry.seq} was taken already")
        if seen is not None:
            raise FeedRefusal("duplicate_seq", f"another entry {entry.seq} was taken already")
        lane = self._partitions.get(partition)
        if lane is not None and entry.seq <= lane.last_seq:
            raise FeedRefusal(
                "reordered",
                f"entry {entry.seq} on partition {partition} comes after entry {lane.last_seq}",
            )

    def _check_signature(self, partition: int, opened: Opened) -> None:
        entry = opened.entry
        lane = self._partitions.get(partition) or _Partition(key_id(self.pinned))
        if entry.signed_by != lane.signer:
            raise FeedRefusal(
                "retired_key" if entry.signed_by in lane.retired else "unknown_key",
                f"entry {entry.seq} is signed by {entry.signed_by}; partition {partition}'s entries are "
                f"signed by {lane.signer}",
            )
        if opened.verified_by != lane.signer:
            opened.verify(self._keys[lane.signer])

    # -- revisions ------------------------------------------------------------------------

    def _complete(self, checkpoint: Checkpoint) -> bool:
        return all(
            p in self._partitions and self._partitions[p].last_seq >= head
            for p, head in checkpoint.heads.items()
        )

    def _switch(self) -> Outcome:
        """Show the newest checkpointed revision the spoke holds whole, if any."""
        refused: list[FeedRefusal] = []
        for revision in sorted(self._checkpoints, reverse=True):
            checkpoint = self._checkpoints[revision]
            if not self._complete(checkpoint):
                continue
            candidate, samples, changed, removed = self._state_at(checkpoint.upto)
            if candidate.entries != checkpoint.entries or candidate.hexdigest() != checkpoint.state_hash:
                del self._checkpoints[revision]
                refused.append(
                    FeedRefusal(
                        "state_mismatch",
                        f"revision {revision}: {candidate.entries} samples held hash to {candidate.hexdigest()}, "
                        f"the checkpoint says {checkpoint.entries} and {checkpoint.state_hash}; still showing "
                        f"revision {self.visible_revision}",
                    )
                )
                continue
            self._hash, self.samples = candidate, samples
            self.visible_revision, self.visible_upto = revision, checkpoint.upto
            self._pending = {seq: o for seq, o in self._pending.items() if seq > checkpoint.upto}
            self._checkpoints = {r: c for r, c in self._checkpoints.items() if r > revision}
            shown = Revision(
                revision,
                checkpoint.upto,
                checkpoint.state_hash,
                dict(checkpoint.offsets),
                samples,
                changed,
                removed,
            )
            return Outcome(shown, tuple(refused))
        return Outcome(None, tuple(refused))

    def _state_at(self, upto: int) -> tuple[StateHash, dict[str, Held], frozenset[str], frozenset[str]]:
        state, samples = self._hash.copy(), dict(self.samples)
        changed: set[str] = set()
        removed: set[str] = set()
        for seq in sorted(s for s in self._pending if s <= upto):
            entry: FeedEntry = self._pending[seq].entry
            digest = self._pending[seq].digest
            held = samples.pop(entry.key, None)
            if held is not None:
                state.remove(entry.key, held.digest)
            if isinstance(entry.body, Withdrawal):
                if held is not None:
                    removed.add(entry.key)
                changed.discard(entry.key)
                continue
            body = entry.body
            assert not isinstance(body, Checkpoint | HubKey)  # only sample entries are held aside
            samples[entry.key] = Held(seq, digest, body)
            state.add(entry.key, digest)
            changed.add(entry.key)
            removed.discard(entry.key)
        return state, samples, frozenset(changed), frozenset(removed)
