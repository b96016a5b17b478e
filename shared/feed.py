"""The signed catalogue feed from the hub to a spoke (design.md section 11).

Each spoke has one compacted topic, ``genomhub.spoke.<region>.catalogue.v1``. Its records are
signed entries: the hub writes them, MirrorMaker 2 carries them across sites, and a spoke
believes nothing it cannot verify against the hub key it pinned. Both halves use this module,
so the bytes the hub signs are by construction the bytes the spoke checks.

An entry binds what it says to where it may be read: the feed (so one spoke's entries cannot
be replayed into another's), the record key, and a sequence number the hub counts up per
feed. Its body is one of

- a **record** (a spoke's own sample, or one granted to it, with the grant's end),
- a **summary** (discovery only: that the sample exists, its region, analysis type, QC
  verdict, counts and month; no storage URL, header, key, department, patient or date finer
  than the month),
- a **withdrawal** (the sample is gone from the feed; signed, so unlike Kafka's null-valued
  tombstone a spoke can tell the hub's removal from anyone's),
- a **checkpoint** (the revision: the last sequence number it covers, each partition's last
  one, the hub's offsets, and the hash of the whole projected state), or
- a **hub key** (a rollover: from the next entry of its partition on, the new key signs).

Revocations and expiries of a grant are not withdrawals: the sample still exists, so the
spoke's record becomes a summary again, an updated entry under the same key.

The state hash is MuHash over the 3072-bit prime 2^3072 - 1103717 (Bitcoin Core's MuHash3072):
the product of one element per live key, each element ``SHAKE256(key, entry digest)`` read as a
number. A product is order-independent (the hub and a spoke that received the partitions
interleaved differently agree) and incremental (a change multiplies by the new element and
divides by the old one, so neither side rehashes 60,000 samples per revision). XOR or a sum of
per-key hashes is order-independent too, but a duplicated key cancels out of an XOR, and with
enough old signed versions of entries to choose from, a relay can solve for a subset whose XOR
(linear algebra over GF(2)) or sum (Wagner's generalised birthday) equals the checkpoint's,
passing off a stale state as complete. Choosing such a set for a product means taking discrete
logarithms in a 3072-bit group. A sorted Merkle tree would be as sound but needs the whole
tree on both sides to update; the product needs one number. Each element hashes the key with
the entry's digest, and a spoke's state is a map (one entry per key), so a key cannot be
counted twice, and the checkpoint's count of live keys is checked as well.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, Field, ValidationError

from shared.config import HubKeySettings
from shared.envelope import UndecodableEvent, canonical_json, read_json
from shared.events import (
    SCHEMA_BASE,
    SCHEMA_DIR,
    AnalysisType,
    Count,
    Moment,
    Month,
    Pseudonym,
    Region,
    SampleGenomeEquivalents,
    SampleStatus,
    Strict,
    SubmissionId,
    TypedText,
    Verdict,
    sample_key,
)

FEED_SIGNATURE_CONTEXT = b"genomhub spoke catalogue feed v1\n"
"""Prefixed to every signed message, so a feed signature is never valid as anything else."""
STATE_ELEMENT_CONTEXT = b"genomhub spoke catalogue state v1\n"
MUHASH_PRIME = 2**3072 - 1103717
MUHASH_BYTES = 384
CHECKPOINT_KEY = "checkpoint"
HUB_KEY_PREFIX = "hub-key"


# -- the bodies -------------------------------------------------------------------------------


class _Discoverable(Strict):
    """What discovery needs of a sample, at Beacon's granularity: every spoke sees this much."""

    region: Region
    sample_id: Pseudonym
    analysis_type: AnalysisType
    qc: Verdict
    status: SampleStatus
    genome_equivalents: SampleGenomeEquivalents
    files: Count
    received_month: Month


class SampleSummary(_Discoverable):
    """Another region's sample, as discovery sees it."""

    kind: Literal["summary"] = "summary"


class SampleRecord(_Discoverable):
    """A sample the spoke may see whole: its own, or granted to it until ``granted_until``."""

    kind: Literal["record"] = "record"
    submission_id: SubmissionId
    department: TypedText = Field(min_length=1, max_length=128)
    platform: TypedText = Field(min_length=1, max_length=64)
    received_at: Moment
    seen_as: Literal["own", "granted"]
    granted_until: AwareDatetime | None = Field(
        default=None, description="The latest end of the grants that let a spoke see another region's sample."
    )


class Withdrawal(Strict):
    """The sample has left the feed (withdrawn by its region, or corrected away)."""

    kind: Literal["withdrawal"] = "withdrawal"
    region: Region
    sample_id: Pseudonym
    reason: Literal["withdrawn", "corrected"]


class Checkpoint(Strict):
    """A revision the spoke may switch to once its state hashes to ``state_hash``."""

    kind: Literal["checkpoint"] = "checkpoint"
    revision: int = Field(ge=1)
    upto: int = Field(ge=0, description="The feed sequence number of the last entry this revision covers.")
    heads: dict[int, int] = Field(
        description="Partition -> sequence number of its last entry up to `upto`; partitions with none are absent."
    )
    offsets: dict[int, int] = Field(
        description="Partition -> the hub's offset after its last entry: the revision as the hub's cluster "
        "numbers it (MirrorMaker 2 renumbers offsets, so a spoke proves completeness by sequence numbers)."
    )
    entries: Count = Field(description="Samples in the projected state.")
    state_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class HubKey(Strict):
    """A rollover: on ``partition``, the entries after this one are signed by ``public_key``."""

    kind: Literal["hub-key"] = "hub-key"
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    public_key: str = Field(description="The new Ed25519 public key, 32 bytes in base64.")
    partition: int = Field(ge=0)


Listed = SampleSummary | SampleRecord
"""A sample the spoke's catalogue lists."""
SampleBody = Listed | Withdrawal
Body = Annotated[SampleBody | Checkpoint | HubKey, Field(discriminator="kind")]


class FeedEntry(Strict):
    feed: str
    key: str
    seq: int = Field(ge=1)
    signed_by: str = Field(pattern=r"^[0-9a-f]{16}$")
    issued_at: Moment
    body: Body


class FeedRecord(Strict):
    """A feed record's value: the entry and its signature (what :func:`seal` writes)."""

    entry: FeedEntry
    signature: str = Field(
        description="Ed25519 over the context line and the entry's canonical JSON, base64."
    )


FEED_SCHEMA_PATH = SCHEMA_DIR / "spoke-catalogue-entry.v1.json"


def render_feed_schema() -> str:
    """The JSON Schema of a feed record's value, checked in beside the events' schemas, for
    spokes and their operators to read; the spoke itself checks through the models."""
    schema = FeedRecord.model_json_schema(mode="serialization")
    schema["$id"] = f"{SCHEMA_BASE}/{FEED_SCHEMA_PATH.name}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_feed_schema() -> Path:
    FEED_SCHEMA_PATH.write_text(render_feed_schema())
    return FEED_SCHEMA_PATH


def entry_key(body: SampleBody | Checkpoint | HubKey) -> str:
    """The record key a body is published under: the sample's for a sample, fixed for the rest."""
    if isinstance(body, Checkpoint):
        return CHECKPOINT_KEY
    if isinstance(body, HubKey):
        return f"{HUB_KEY_PREFIX}/{body.key_id}/{body.partition}"
    return sample_key(body.region, body.sample_id)


# -- keys -------------------------------------------------------------------------------------


HUB_SECRET_KEY_FILE, HUB_PUBLIC_KEY_FILE = "hub.sec", "hub.pub"
"""The files of a hub key pair (``genomhub keys generate-hub --out DIR``)."""


class HubKeyError(Exception):
    """The hub's signing key or a spoke's pinned key cannot be used; the message says why."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of a public key, that each signed entry names its signer by."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def write_hub_key_pair(directory: Path, passphrase: str) -> tuple[Path, Path]:
    """A new hub signing key: ``hub.sec`` (PKCS#8 PEM, locked with ``passphrase``) and
    ``hub.pub`` (the PEM every spoke pins). Never overwrites: a lost hub key means every spoke
    must be given a new pin by hand."""
    if not passphrase:
        raise HubKeyError("a hub key needs a passphrase: set GENOMHUB_HUB_KEY_PASSPHRASE")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_path, public_path = directory / HUB_SECRET_KEY_FILE, directory / HUB_PUBLIC_KEY_FILE
    for existing in (secret_path, public_path):
        if existing.exists():
            raise HubKeyError(f"{existing} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    secret = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret_path.touch(mode=0o600)
    secret_path.write_bytes(secret)
    public_path.write_bytes(public)
    return secret_path, public_path


def read_hub_secret_key(path: Path, passphrase: str) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HubKeyError(f"cannot read the hub's signing key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode() if passphrase else None)
    except TypeError as exc:  # unlocked key given a passphrase, or locked one given none
        raise HubKeyError(f"{path}: {exc}; a hub key is locked with GENOMHUB_HUB_KEY_PASSPHRASE") from exc
    except ValueError as exc:
        raise HubKeyError(f"{path} is not a PEM private key, or the passphrase is wrong") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise HubKeyError(f"{path} is not an Ed25519 key")
    return key


def read_hub_public_key(path: Path) -> Ed25519PublicKey:
    """A spoke's pin: the hub's public key as ``genomhub keys generate-hub`` wrote it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HubKeyError(f"cannot read the pinned hub key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise HubKeyError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise HubKeyError(f"{path} is not an Ed25519 key")
    return key


def hub_signing_key(settings: HubKeySettings) -> Ed25519PrivateKey:
    """The configured hub signing key, unlocked, with the configured public half (the pin a
    spoke is given) checked to be its own: what the publisher loads at start and
    ``genomhub keys check-hub`` checks, so that both fail for the same reasons."""
    passphrase = settings.key_passphrase
    secret = read_hub_secret_key(settings.secret_path(), passphrase.get_secret_value() if passphrase else "")
    public = read_hub_public_key(settings.public_path())
    if key_id(secret.public_key()) != key_id(public):
        raise HubKeyError(f"{settings.public_path()} is not the public half of {settings.secret_path()}")
    return secret


def previous_hub_key(settings: HubKeySettings) -> Ed25519PrivateKey | None:
    """During a rollover, the hub key that signs the feeds now (``GENOMHUB_HUB_PREVIOUS_SECRET_KEY``);
    None otherwise."""
    if settings.previous_secret_key is None:
        return None
    passphrase = settings.previous_key_passphrase or settings.key_passphrase
    return read_hub_secret_key(
        settings.previous_secret_key, passphrase.get_secret_value() if passphrase else ""
    )


# -- signing and reading ----------------------------------------------------------------------


def signed_message(entry: dict[str, Any]) -> bytes:
    return FEED_SIGNATURE_CONTEXT + canonical_json(entry)


def entry_digest(entry: dict[str, Any]) -> str:
    """The sha256 of an entry's canonical form: what the state hash counts for its key."""
    return hashlib.sha256(canonical_json(entry)).hexdigest()


def seal(entry: FeedEntry, key: Ed25519PrivateKey) -> bytes:
    """The record value of ``entry``, signed by ``key`` (which the entry must name)."""
    if entry.signed_by != key_id(key.public_key()):
        raise HubKeyError("an entry names another key than the one signing it")
    data = entry.model_dump(mode="json")
    signature = key.sign(signed_message(data))
    return canonical_json({"entry": data, "signature": base64.b64encode(signature).decode()})


class FeedRefusal(Exception):
    """A record the spoke does not believe: ``reason`` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Opened:
    """A record value taken apart: the entry as signed, its signature, and its model."""

    __slots__ = ("canonical", "digest", "entry", "raw", "signature", "verified_by")

    def __init__(self, raw: dict[str, Any], signature: bytes, entry: FeedEntry) -> None:
        self.raw = raw
        self.signature = signature
        self.entry = entry
        # Serialised once: the digest and the signed message are of the same bytes, and a
        # first sync opens every record of the feed.
        self.canonical = canonical_json(raw)
        self.digest = hashlib.sha256(self.canonical).hexdigest()
        self.verified_by: str | None = None
        """The id of a key the signature was found good for ahead of time (:meth:`check_ahead`)."""

    def verify(self, public: Ed25519PublicKey) -> None:
        try:
            public.verify(self.signature, FEED_SIGNATURE_CONTEXT + self.canonical)
        except InvalidSignature:
            raise FeedRefusal(
                "bad_signature", f"entry {self.entry.seq} does not verify against key {self.entry.signed_by}"
            ) from None

    def check_ahead(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        """Check the signature against the key it names, if that key is among ``keys``, and
        remember a good one: the reader still decides in order which key must have signed it
        and refuses on its own check. Safe on any thread (the key's check releases the GIL)."""
        public = keys.get(self.entry.signed_by)
        if public is None:
            return
        with contextlib.suppress(InvalidSignature):
            public.verify(self.signature, FEED_SIGNATURE_CONTEXT + self.canonical)
            self.verified_by = self.entry.signed_by


def open_record(value: bytes | None) -> Opened:
    """Parse a record value into an entry and its signature, refusing anything else."""
    if value is None:
        raise FeedRefusal(
            "unsigned_deletion",
            "a null-valued record carries no signature; the hub withdraws with a signed entry",
        )
    try:
        document = read_json(value)
    except UndecodableEvent as exc:
        raise FeedRefusal("malformed", str(exc)) from None
    if not isinstance(document, dict) or set(document) != {"entry", "signature"}:
        raise FeedRefusal("malformed", "a feed record holds exactly an entry and its signature")
    raw, signature_text = document["entry"], document["signature"]
    if not isinstance(raw, dict) or not isinstance(signature_text, str):
        raise FeedRefusal("malformed", "a feed record's entry is an object and its signature text")
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except ValueError:
        raise FeedRefusal("malformed", "the signature is not base64") from None
    try:
        entry = FeedEntry.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FeedRefusal("malformed", f"{where}: {first['msg']}") from None
    return Opened(raw, signature, entry)


# -- the state hash ---------------------------------------------------------------------------


def state_element(key: str, digest: str) -> int:
    """The number one live key contributes to the state hash."""
    material = STATE_ELEMENT_CONTEXT + canonical_json([key, digest])
    value = int.from_bytes(hashlib.shake_256(material).digest(MUHASH_BYTES), "big") % MUHASH_PRIME
    return value or 1


class StateHash:
    """MuHash of a set of (key, entry digest) pairs, kept as a fraction so updates need no
    inverse; the one inversion happens when the hash is read."""

    __slots__ = ("denominator", "entries", "numerator")

    def __init__(self, numerator: int = 1, denominator: int = 1, entries: int = 0) -> None:
        self.numerator = numerator
        self.denominator = denominator
        self.entries = entries

    def copy(self) -> StateHash:
        return StateHash(self.numerator, self.denominator, self.entries)

    def add(self, key: str, digest: str) -> None:
        self.numerator = self.numerator * state_element(key, digest) % MUHASH_PRIME
        self.entries += 1

    def remove(self, key: str, digest: str) -> None:
        self.denominator = self.denominator * state_element(key, digest) % MUHASH_PRIME
        self.entries -= 1

    def hexdigest(self) -> str:
        value = self.numerator * pow(self.denominator, -1, MUHASH_PRIME) % MUHASH_PRIME
        return hashlib.sha256(value.to_bytes(MUHASH_BYTES, "big")).hexdigest()
