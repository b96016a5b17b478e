"""Crypt4GH encryption at rest: the archive key, file headers and segment bodies.

The archive stores every file in GA4GH's Crypt4GH format (design.md section 13), as the peer
archives do, but keeps a file's two parts apart: the *header* (a few hundred bytes that hold
the file's data key, encrypted to NGC's archive public key with X25519) and the *body* (the
plaintext cut into 64 KiB segments, each ``nonce(12) + ChaCha20 ciphertext + Poly1305
tag(16)`` under that data key). Headers live where rewriting them is cheap, so rotating the
archive key or handing a working copy to a recipient re-encrypts headers only and never
recalls a body from tape. A header concatenated with its body is an ordinary Crypt4GH file
that the ``crypt4gh`` command line decrypts.

The ``crypt4gh`` package provides the format: key files, header packets, the X25519 key
exchange. The segments go through the ``cryptography`` package's ChaCha20-Poly1305
(OpenSSL), at half the CPU per GB of the package's own libsodium call and a quarter of md5's,
so that the intake keeps md5's pace (``bench/encryption.py`` measures them against
``openssl enc -chacha20`` and ``md5sum``).

What Crypt4GH does not protect by itself is the pairing of a header with its body and the
body's length: a segment boundary cut leaves every remaining segment authentic. So the
decryptor takes the plaintext size the archive recorded and reports a short or long body,
and a header replayed from another file is caught because its data key opens none of this
body's segments.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO

from crypt4gh import header as c4gh_header
from crypt4gh import keys as c4gh_keys
from crypt4gh import sodium as c4gh_sodium
from crypt4gh.keys import c4gh as c4gh_keyfile
from crypt4gh.keys import kdf as c4gh_kdf
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from shared.config import ArchiveKeySettings

# The package logs secret keys and data keys at DEBUG and a line per header packet it cannot
# open at ERROR; genomhub raises its own specific errors instead, and keys never reach a log.
logging.getLogger("crypt4gh").setLevel(logging.CRITICAL)

SEGMENT_SIZE = 65536
"""Plaintext bytes of every body segment but the last (fixed by Crypt4GH version 1)."""
NONCE_SIZE = 12
TAG_SIZE = 16
CIPHER_SEGMENT_SIZE = NONCE_SIZE + SEGMENT_SIZE + TAG_SIZE
KEY_SIZE = 32
DATA_ENCRYPTION_CHACHA20_POLY1305 = 0
"""Crypt4GH's code for both the header packets' and the segments' cipher."""

CRYPT4GH_MAGIC = b"crypt4gh"
"""The first bytes of every Crypt4GH file (its header's magic word)."""

SECRET_KEY_FILE = "archive.sec"
PUBLIC_KEY_FILE = "archive.pub"


class EncryptionError(Exception):
    """Something encrypted at rest cannot be used as it is; the message says what and why."""


class ArchiveKeyError(EncryptionError):
    """The archive key cannot be loaded: missing, not Crypt4GH, wrong passphrase, mismatched."""


class MalformedHeader(EncryptionError):
    """The bytes given as a header are not a Crypt4GH header genomhub can use."""


class HeaderKeyMismatch(EncryptionError):
    """The header is well formed but none of its packets opens with the key given."""


class SegmentAuthenticationError(EncryptionError):
    """A body segment fails its Poly1305 tag: its bytes are not the ones that were written."""

    def __init__(self, segment: int, message: str) -> None:
        super().__init__(message)
        self.segment = segment


class ForeignHeader(SegmentAuthenticationError):
    """The header opens with the key, but its data key opens none of this body's segments:
    a header of another file (a replayed or swapped header row)."""


class TruncatedBody(EncryptionError):
    """The body ends before the plaintext size recorded for it (or inside a segment)."""


class OverlongBody(EncryptionError):
    """The body goes on past the plaintext size recorded for it."""


def body_size(plaintext_size: int) -> int:
    """Bytes of the body that encrypts ``plaintext_size`` bytes (28 more per segment)."""
    if plaintext_size < 0:
        raise ValueError(f"a plaintext size cannot be negative, got {plaintext_size}")
    segments = -(-plaintext_size // SEGMENT_SIZE)
    return plaintext_size + segments * (NONCE_SIZE + TAG_SIZE)


def whole_segments_stored(stored_body: int) -> int:
    """Plaintext bytes of the whole segments in a body prefix of ``stored_body`` bytes.

    What a file in transit holds for certain: a resume continues after its last whole
    segment, and a torn segment after it (a receiver that died mid-write) is written again.
    """
    return stored_body // CIPHER_SEGMENT_SIZE * SEGMENT_SIZE


def in_whole_segments(size: int) -> int:
    """``size`` rounded up to whole cipher segments: a part of a body in parts (an S3
    multipart upload) that ends on a segment boundary, so that the parts stored always
    hold whole segments and a resume continues at a plaintext segment boundary."""
    return -(-size // CIPHER_SEGMENT_SIZE) * CIPHER_SEGMENT_SIZE


# --------------------------------------------------------------------------------------------
# The archive key
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveKey:
    """NGC's archive key pair: X25519, the secret half unlocked from its Crypt4GH key file."""

    public: bytes
    secret: bytes = field(repr=False)
    previous: ArchiveKey | None = field(default=None, repr=False)
    """The retiring key during a rotation: headers not yet rewritten still open with it, so
    readers need not wait for ``genomhub archive rotate-key`` to finish. Nothing is ever
    encrypted to it."""

    @property
    def fingerprint(self) -> str:
        """A short name of the public key for logs and messages (never the secret half)."""
        return sha256(self.public).hexdigest()[:16]

    @property
    def current(self) -> ArchiveKey:
        """This key alone, without the retiring one (to tell a rotated header from one not yet)."""
        return ArchiveKey(public=self.public, secret=self.secret)

    def _secrets(self) -> list[tuple[int, bytes, None]]:
        keys = [self.secret] + ([self.previous.secret] if self.previous is not None else [])
        return [(DATA_ENCRYPTION_CHACHA20_POLY1305, secret, None) for secret in keys]

    def _names(self) -> str:
        if self.previous is None:
            return f"archive key {self.fingerprint}"
        return f"archive key {self.fingerprint} nor the retiring {self.previous.fingerprint}"


def read_public_key(path: Path) -> bytes:
    """The 32 bytes of a Crypt4GH public key file (the ``crypt4gh-keygen`` format)."""
    text = _read_key_file(path, "public")
    if not text.lstrip().startswith(b"-----BEGIN CRYPT4GH PUBLIC KEY-----"):
        raise ArchiveKeyError(
            f"{path} is not a Crypt4GH public key (it must start with "
            "'-----BEGIN CRYPT4GH PUBLIC KEY-----'; make one with `genomhub keys generate`)"
        )
    try:
        public = bytes(c4gh_keys.get_public_key(str(path)))
    except (ValueError, NotImplementedError) as exc:
        raise ArchiveKeyError(f"{path} is not a readable Crypt4GH public key: {exc}") from exc
    if len(public) != KEY_SIZE:
        raise ArchiveKeyError(f"{path} holds {len(public)} bytes, not a {KEY_SIZE}-byte X25519 public key")
    return public


PUBLIC_KEY_BEGIN = "-----BEGIN CRYPT4GH PUBLIC KEY-----"
PUBLIC_KEY_END = "-----END CRYPT4GH PUBLIC KEY-----"


def parse_public_key(text: str) -> bytes:
    """The 32 bytes of a Crypt4GH public key given as its file's text (a department's key
    arrives in a request body, not as a file on this machine); ValueError says what is wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 3 or lines[0] != PUBLIC_KEY_BEGIN or lines[2] != PUBLIC_KEY_END:
        raise ValueError(
            f"not a Crypt4GH public key: expected {PUBLIC_KEY_BEGIN!r}, one base64 line, {PUBLIC_KEY_END!r}"
        )
    try:
        public = base64.b64decode(lines[1], validate=True)
    except binascii.Error:
        raise ValueError("not a Crypt4GH public key: its middle line is not base64") from None
    if len(public) != KEY_SIZE:
        raise ValueError(f"the key holds {len(public)} bytes, not a {KEY_SIZE}-byte X25519 public key")
    return public


def public_key_text(public: bytes) -> str:
    """The Crypt4GH public key file's text of ``public`` (what ``crypt4gh-keygen`` writes)."""
    _check_recipient(public)
    return f"{PUBLIC_KEY_BEGIN}\n{base64.b64encode(public).decode()}\n{PUBLIC_KEY_END}\n"


def read_secret_key(path: Path, passphrase: str) -> bytes:
    """The 32-byte X25519 secret of a passphrase-locked Crypt4GH private key file.

    The package's own loader exits the process on a wrong passphrase (it is written for its
    command line), so the key file's fields are read here with the package's decoders and
    KDFs, and each way the file can be unusable gets its own message.
    """
    _read_key_file(path, "secret")
    try:
        blob = c4gh_keys.load_from_pem(str(path))
    except (ValueError, OSError) as exc:
        raise ArchiveKeyError(f"{path} is not a Crypt4GH private key: {exc}") from exc
    stream = io.BytesIO(blob)
    if stream.read(len(c4gh_keyfile.MAGIC_WORD)) != c4gh_keyfile.MAGIC_WORD:
        raise ArchiveKeyError(
            f"{path} is not a Crypt4GH private key (an OpenSSH or other key?); the archive key "
            "must be in Crypt4GH's key format: make one with `genomhub keys generate`"
        )
    try:
        kdf_name = c4gh_keyfile.decode_string(stream)
        if kdf_name == b"none":
            raise ArchiveKeyError(
                f"{path} is not locked with a passphrase; the archive key must be (re-lock it with "
                "`crypt4gh-keygen --relock`, or make a new one with `genomhub keys generate`)"
            )
        if kdf_name not in c4gh_kdf.KDFS:
            raise ArchiveKeyError(f"{path} uses an unknown key derivation {kdf_name!r}")
        kdf_options = c4gh_keyfile.decode_string(stream)
        cipher = c4gh_keyfile.decode_string(stream)
        locked = c4gh_keyfile.decode_string(stream)
    except ValueError as exc:
        raise ArchiveKeyError(f"{path} is a damaged Crypt4GH private key: {exc}") from exc
    if cipher != b"chacha20_poly1305":
        raise ArchiveKeyError(f"{path} is locked with an unknown cipher {cipher!r}")
    if not passphrase:
        raise ArchiveKeyError(
            f"{path} is locked with a passphrase and none is set: set GENOMHUB_ARCHIVE_KEY_PASSPHRASE"
        )
    rounds, salt = int.from_bytes(kdf_options[:4], "big"), kdf_options[4:]
    unlocking_key = c4gh_kdf.derive_key(kdf_name, passphrase.encode(), salt, rounds)
    try:
        secret = ChaCha20Poly1305(unlocking_key).decrypt(locked[:NONCE_SIZE], locked[NONCE_SIZE:], None)
    except InvalidTag:
        raise ArchiveKeyError(
            f"the passphrase does not unlock {path} (GENOMHUB_ARCHIVE_KEY_PASSPHRASE is wrong)"
        ) from None
    if len(secret) != KEY_SIZE:
        raise ArchiveKeyError(f"{path} unlocks to {len(secret)} bytes, not a {KEY_SIZE}-byte X25519 key")
    return secret


def load_archive_key(secret_path: Path, public_path: Path, passphrase: str) -> ArchiveKey:
    """Both halves of the archive key, checked to belong together.

    A public key file left over from another key pair would have every new file encrypted to
    a key whose secret half NGC does not hold: that is refused here, before any byte is
    written.
    """
    return _paired(
        read_secret_key(secret_path, passphrase), read_public_key(public_path), secret_path, public_path
    )


def _paired(secret: bytes, public: bytes, secret_path: Path, public_path: Path) -> ArchiveKey:
    if bytes(c4gh_sodium.derive_pk(secret)) != public:
        raise ArchiveKeyError(
            f"{public_path} is not the public half of {secret_path}: they come from different key pairs"
        )
    return ArchiveKey(public=public, secret=secret)


def archive_key_paths(settings: ArchiveKeySettings) -> tuple[Path, Path]:
    """The configured archive key files; unset, ``<home>/keys/archive.sec`` and ``.pub``."""
    keys = settings.state.state_dir / "keys"
    secret = settings.secret_key or keys / SECRET_KEY_FILE
    public = settings.public_key or keys / PUBLIC_KEY_FILE
    return secret, public


def check_archive_key(settings: ArchiveKeySettings) -> ArchiveKey:
    """The start-up check of a service that encrypts or decrypts: the archive key (with the
    retiring one during a rotation), or an :class:`ArchiveKeyError` whose one line starts with
    the setting to fix, so a service with a missing or wrong key stops at once instead of
    failing on its first file. Neither a key nor a passphrase is ever part of the message."""
    secret_path, public_path = archive_key_paths(settings)
    passphrase = settings.key_passphrase.get_secret_value() if settings.key_passphrase else ""
    try:
        secret = read_secret_key(secret_path, passphrase)
    except ArchiveKeyError as exc:
        raise ArchiveKeyError(f"GENOMHUB_ARCHIVE_SECRET_KEY: {exc}") from None
    try:
        public = read_public_key(public_path)
        key = _paired(secret, public, secret_path, public_path)
    except ArchiveKeyError as exc:
        raise ArchiveKeyError(f"GENOMHUB_ARCHIVE_PUBLIC_KEY: {exc}") from None
    if settings.previous_secret_key is None:
        return key
    previous_passphrase = settings.previous_key_passphrase
    try:
        previous = read_secret_key(
            settings.previous_secret_key,
            previous_passphrase.get_secret_value() if previous_passphrase else passphrase,
        )
    except ArchiveKeyError as exc:
        raise ArchiveKeyError(
            f"GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY: {exc}".replace(
                "GENOMHUB_ARCHIVE_KEY_PASSPHRASE", "GENOMHUB_ARCHIVE_PREVIOUS_KEY_PASSPHRASE"
            )
        ) from None
    if previous == secret:
        raise ArchiveKeyError(
            "GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY: it is the current archive key; during a rotation "
            "it names the retiring key, and after it is unset"
        )
    return ArchiveKey(public, secret, ArchiveKey(bytes(c4gh_sodium.derive_pk(previous)), previous))


def write_key_pair(
    directory: Path, passphrase: str, comment: str = "genomhub archive key"
) -> tuple[Path, Path]:
    """A new X25519 key pair in Crypt4GH's key format, the secret half locked by ``passphrase``.

    Written with the package's own writer, so ``crypt4gh`` and ``crypt4gh-keygen`` read the
    files as their own; an existing key is never overwritten (losing the archive key loses
    the archive).
    """
    if not passphrase:
        raise ArchiveKeyError("an archive key needs a passphrase: set GENOMHUB_ARCHIVE_KEY_PASSPHRASE")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_path, public_path = directory / SECRET_KEY_FILE, directory / PUBLIC_KEY_FILE
    for existing in (secret_path, public_path):
        if existing.exists():
            raise ArchiveKeyError(f"{existing} exists; refusing to overwrite a key")
    c4gh_keyfile.generate(str(secret_path), str(public_path), passphrase.encode(), comment.encode())
    return secret_path, public_path


def _read_key_file(path: Path, half: str) -> bytes:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ArchiveKeyError(f"the archive {half} key {path} is not a file")
        return path.read_bytes()
    except FileNotFoundError:
        setting = "GENOMHUB_ARCHIVE_SECRET_KEY" if half == "secret" else "GENOMHUB_ARCHIVE_PUBLIC_KEY"
        raise ArchiveKeyError(
            f"the archive {half} key {path} does not exist: set {setting}, or make a key pair "
            "with `genomhub keys generate --out DIR`"
        ) from None
    except PermissionError:
        raise ArchiveKeyError(f"the archive {half} key {path} is not readable by this process") from None


# --------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------


def encrypt_header(data_key: bytes, recipient: bytes) -> bytes:
    """A Crypt4GH header that gives ``data_key`` to the holder of ``recipient``'s secret key.

    The writer's key is ephemeral, as the ``crypt4gh`` command line makes it without
    ``--sk``: the header needs no sender identity, and nothing else would use that key.
    """
    _check_recipient(recipient)
    packet = c4gh_header.make_packet_data_enc(DATA_ENCRYPTION_CHACHA20_POLY1305, data_key)
    writer = os.urandom(KEY_SIZE)
    packets = c4gh_header.encrypt(packet, [(DATA_ENCRYPTION_CHACHA20_POLY1305, writer, recipient)])
    return bytes(c4gh_header.serialize(packets))


def _check_recipient(recipient: bytes) -> None:
    if len(recipient) != KEY_SIZE:
        raise ValueError(f"a recipient's X25519 public key has {KEY_SIZE} bytes, got {len(recipient)}")


def _header_packets(header: bytes) -> list[bytes]:
    stream = io.BytesIO(header)
    try:
        packets = [bytes(p) for p in c4gh_header.parse(stream)]
    except ValueError as exc:
        raise MalformedHeader(f"not a Crypt4GH header: {exc}") from exc
    if stream.tell() != len(header):
        raise MalformedHeader(f"{len(header) - stream.tell()} bytes follow the header's last packet")
    return packets


def open_header(header: bytes, key: ArchiveKey) -> bytes:
    """The data key of a whole-file header, or why it cannot be had.

    Only whole files are archived, so a header with an edit list (a sliced file) or several
    data keys is refused rather than half honoured.
    """
    packets = _header_packets(header)
    opened, _ = c4gh_header.decrypt(packets, key._secrets())
    if not opened:
        raise HeaderKeyMismatch(
            f"the header does not open with {key._names()}: it was encrypted to another key"
        )
    try:
        data_packets, edit_list = c4gh_header.partition_packets(opened)
        data_keys = [bytes(c4gh_header.parse_enc_packet(p)) for p in data_packets]
    except ValueError as exc:
        raise MalformedHeader(f"the header's packets are not usable: {exc}") from exc
    if edit_list is not None:
        raise MalformedHeader("the header holds an edit list (a sliced file); the archive holds whole files")
    if len(data_keys) != 1:
        raise MalformedHeader(
            f"the header holds {len(data_keys)} data keys; an archived file has exactly one"
        )
    if len(data_keys[0]) != KEY_SIZE:
        raise MalformedHeader(f"the header's data key has {len(data_keys[0])} bytes, not {KEY_SIZE}")
    return data_keys[0]


def reencrypt_header(header: bytes, key: ArchiveKey, recipient: bytes) -> bytes:
    """The header re-encrypted for ``recipient``, the data key and so the body unchanged.

    This is key rotation (``recipient`` is the new archive key) and a working copy (the
    recipient's key). The packets for ``key`` are dropped, so the old key no longer opens
    the new header: a rotated header is useless to a retired key.
    """
    _check_recipient(recipient)
    open_header(header, key)  # the same checks and errors as a read
    packets = c4gh_header.reencrypt(
        _header_packets(header),
        key._secrets(),
        [(DATA_ENCRYPTION_CHACHA20_POLY1305, os.urandom(KEY_SIZE), recipient)],
        trim=True,
    )
    return bytes(c4gh_header.serialize(packets))


def split_header(crypt4gh_file: BinaryIO) -> bytes:
    """Read a Crypt4GH file's header, leaving ``crypt4gh_file`` at the first body byte.

    For files that arrive whole (e.g. encrypted by the ``crypt4gh`` command line into an
    inbox), so their header can be kept apart from their body like the archive's own.
    """
    try:
        packets = list(c4gh_header.parse(crypt4gh_file))
    except ValueError as exc:
        raise MalformedHeader(f"not a Crypt4GH file: {exc}") from exc
    return bytes(c4gh_header.serialize(packets))


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


class BodyEncryptor:
    """Encrypts one file as it streams: plaintext chunks of any size in, segments out.

    A fresh data key per file, so a leaked data key exposes one file and a header replayed
    onto another body opens nothing. Memory stays at one partial segment whatever the file's
    size beyond the chunk being fed. Push-style (``feed``/``finish``) so that both a
    synchronous loop and the receiver's async upload handler can drive it; each returns the
    finished segments as a list rather than lazily, so a caller that forgets to iterate cannot
    silently drop a chunk. :func:`encrypt_chunks` is the loop form.
    """

    def __init__(self, recipient: bytes) -> None:
        data_key = os.urandom(KEY_SIZE)
        self._start(encrypt_header(data_key, recipient), data_key, 0)

    @classmethod
    def continuing(cls, header: bytes, key: ArchiveKey, plaintext_size: int) -> BodyEncryptor:
        """The encryptor of a body whose first ``plaintext_size`` bytes (whole segments) are
        stored already under ``header``: a resumed upload goes on under the same data key, on
        any replica, because the header is kept and opens with the archive key."""
        if plaintext_size % SEGMENT_SIZE:
            raise ValueError(f"a stored prefix ends on a segment boundary, not at {plaintext_size}")
        encryptor = cls.__new__(cls)
        encryptor._start(header, open_header(header, key), plaintext_size)
        return encryptor

    def _start(self, header: bytes, data_key: bytes, plaintext_size: int) -> None:
        self.header = header
        self._cipher = ChaCha20Poly1305(data_key)
        self._pending = bytearray()
        self.plaintext_size = plaintext_size
        self.body_size = body_size(plaintext_size)
        self._finished = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[bytearray]:
        """The segments that ``chunk`` completes (none while less than 64 KiB is pending)."""
        if self._finished:
            raise RuntimeError("the encryptor has finished; a body takes no bytes after its last segment")
        view = memoryview(chunk).cast("B")
        self.plaintext_size += len(view)
        segments: list[bytearray] = []
        if self._pending:
            take = min(SEGMENT_SIZE - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < SEGMENT_SIZE:
                return segments
            segments.append(self._seal(self._pending))
            self._pending = bytearray()
        whole = len(view) - len(view) % SEGMENT_SIZE
        segments.extend(
            self._seal(view[start : start + SEGMENT_SIZE]) for start in range(0, whole, SEGMENT_SIZE)
        )
        self._pending += view[whole:]
        return segments

    def finish(self) -> list[bytearray]:
        """The last, short segment, if the plaintext did not end on a segment boundary."""
        if self._finished:
            return []
        self._finished = True
        last, self._pending = self._pending, bytearray()
        return [self._seal(last)] if last else []

    def _seal(self, plaintext: bytes | bytearray | memoryview) -> bytearray:
        segment = bytearray(NONCE_SIZE + len(plaintext) + TAG_SIZE)
        self._seal_segment(plaintext, memoryview(segment))
        return segment

    def seal_into(self, plaintext: memoryview, out: memoryview) -> int:
        """Seals ``plaintext`` into ``out`` as consecutive segments, returning the bytes written.

        The allocation-free form for a write lane that owns its buffers: every segment but the
        last must be whole (so a call holds whole segments, or ends the body with a short one)
        and ``out`` must hold :func:`body_size` of it. Not mixed with :meth:`feed`'s pending
        bytes; a short segment is the body's last, after which nothing more is sealed.
        """
        if self._finished or self._pending:
            raise RuntimeError("seal_into continues a body of whole segments only")
        written = 0
        for start in range(0, len(plaintext), SEGMENT_SIZE):
            segment = plaintext[start : start + SEGMENT_SIZE]
            size = NONCE_SIZE + len(segment) + TAG_SIZE
            self._seal_segment(segment, out[written : written + size])
            written += size
            self.plaintext_size += len(segment)
            if len(segment) < SEGMENT_SIZE:
                self._finished = True
        return written

    def _seal_segment(self, plaintext: bytes | bytearray | memoryview, out: memoryview) -> None:
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        self._cipher.encrypt_into(nonce, plaintext, None, out[NONCE_SIZE:])
        self.body_size += len(out)


def encrypt_chunks(
    encryptor: BodyEncryptor, chunks: Iterable[bytes | bytearray | memoryview]
) -> Iterator[bytearray]:
    """The body of ``chunks``, segment by segment; the header is ``encryptor.header``."""
    for chunk in chunks:
        yield from encryptor.feed(chunk)
    yield from encryptor.finish()


class BodyDecryptor(io.RawIOBase):
    """Reads a body's plaintext as it streams, every segment's tag verified before use.

    A file-like object (``readinto``, and ``read`` through :class:`io.RawIOBase`; wrap it in
    :class:`io.BufferedReader` for small reads) and a segment iterator (:meth:`segments`).
    No byte of a segment is handed out before its Poly1305 tag checks, so corrupted or
    foreign bytes are never read as data. ``plaintext_size`` is the size the archive
    recorded: with it a body cut at a segment boundary or running on is caught too, which
    the format alone cannot see.
    """

    def __init__(
        self,
        header: bytes,
        body: BinaryIO,
        key: ArchiveKey,
        plaintext_size: int | None = None,
        *,
        close_body: bool = False,
    ) -> None:
        super().__init__()
        self._close_body = close_body
        self._cipher = ChaCha20Poly1305(open_header(header, key))
        self._body = body
        self._plaintext_size = plaintext_size
        self._expected_body = None if plaintext_size is None else body_size(plaintext_size)
        self._position = 0
        self._segment_index = 0
        self._body_read = 0
        self._cipher_segment = bytearray(CIPHER_SEGMENT_SIZE)
        self._plaintext = bytearray(SEGMENT_SIZE)
        self._plaintext_start = 0
        self._plaintext_end = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Closes the decryptor, and the body too when it was opened for this decryptor."""
        if not self.closed and self._close_body:
            self._body.close()
        super().close()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        if not len(out):
            return 0
        if self._plaintext_start == self._plaintext_end:
            if len(out) >= SEGMENT_SIZE:  # a whole segment fits: no copy through our buffer
                size = self._next_segment_into(out)
                self._position += size
                return size
            self._plaintext_start, self._plaintext_end = (
                0,
                self._next_segment_into(memoryview(self._plaintext)),
            )
        count = min(len(out), self._plaintext_end - self._plaintext_start)
        out[:count] = self._plaintext[self._plaintext_start : self._plaintext_start + count]
        self._plaintext_start += count
        self._position += count
        return count

    def seekable(self) -> bool:
        """Seekable when the body is and its plaintext size is known: segments are sealed
        one by one, so any offset is one segment's read and authentication away."""
        return self._plaintext_size is not None and bool(getattr(self._body, "seekable", lambda: False)())

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Moves to a plaintext offset; the segment holding it is read and checked at once,
        so an offset inside a corrupted segment fails here rather than on the next read."""
        if not self.seekable():
            raise io.UnsupportedOperation("the body cannot seek, or its plaintext size is not known")
        assert self._plaintext_size is not None
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._plaintext_size}[whence]
        target = base + offset
        if target < 0:
            raise ValueError(f"cannot seek to {target}, before the file's start")
        segment = min(target, self._plaintext_size) // SEGMENT_SIZE
        self._body.seek(segment * CIPHER_SEGMENT_SIZE)
        self._body_read = segment * CIPHER_SEGMENT_SIZE
        self._segment_index = segment
        self._ended = False
        self._plaintext_start = self._plaintext_end = 0
        within = min(target, self._plaintext_size) - segment * SEGMENT_SIZE
        if within:
            self._plaintext_end = self._next_segment_into(memoryview(self._plaintext))
            self._plaintext_start = within
        self._position = target
        return target

    def segments(self) -> Iterator[bytes]:
        """Each segment's plaintext in order, after what ``readinto`` has already returned."""
        if self._plaintext_start < self._plaintext_end:
            self._position += self._plaintext_end - self._plaintext_start
            yield bytes(self._plaintext[self._plaintext_start : self._plaintext_end])
            self._plaintext_start = self._plaintext_end
        while True:
            size = self._next_segment_into(memoryview(self._plaintext))
            if not size:
                return
            self._position += size
            yield bytes(self._plaintext[:size])

    def sealed_segments(self) -> Iterator[bytes]:
        """Each remaining segment as stored (nonce, ciphertext, tag), once its tag checked.

        A whole-file working copy sends the archive's body as it is, under a re-encrypted
        header; opening every segment on the way out is what keeps a corrupted one from
        ever leaving (the error is raised before its bytes are yielded)."""
        while size := self._next_segment_into(memoryview(self._plaintext)):
            self._position += size
            yield bytes(self._cipher_segment[: NONCE_SIZE + size + TAG_SIZE])

    def _next_segment_into(self, out: memoryview) -> int:
        """Decrypts the next segment into ``out``; 0 at the end of a body of the right length."""
        if self._ended:
            return 0
        read = _read_fully(self._body, self._cipher_segment)
        self._body_read += read
        if read == 0:
            self._ended = True
            if self._expected_body is not None and self._body_read < self._expected_body:
                raise TruncatedBody(
                    f"the body ends after {self._body_read} bytes (segment {self._segment_index}), "
                    f"{self._expected_body - self._body_read} short of the {self._expected_body} "
                    "its plaintext size needs"
                )
            return 0
        if self._expected_body is not None and self._body_read > self._expected_body:
            raise OverlongBody(
                f"the body runs past the {self._expected_body} bytes its plaintext size needs "
                f"(segment {self._segment_index})"
            )
        if read <= NONCE_SIZE + TAG_SIZE or (
            read < CIPHER_SEGMENT_SIZE
            and self._expected_body is not None
            and self._body_read < self._expected_body
        ):
            raise TruncatedBody(
                f"segment {self._segment_index} is cut short: {read} bytes where a segment holds "
                f"{NONCE_SIZE + TAG_SIZE + 1} to {CIPHER_SEGMENT_SIZE}"
            )
        segment = memoryview(self._cipher_segment)[:read]
        size = read - NONCE_SIZE - TAG_SIZE
        try:
            self._cipher.decrypt_into(segment[:NONCE_SIZE], segment[NONCE_SIZE:], None, out[:size])
        except InvalidTag:
            out[:size] = bytes(size)  # no unauthenticated byte is left in the caller's buffer
            raise self._authentication_failure() from None
        self._segment_index += 1
        return size

    def _authentication_failure(self) -> SegmentAuthenticationError:
        """Which failure a bad tag is: a corrupted segment, or (on the first segment, when the
        second fails too) a header whose data key belongs to another body."""
        index = self._segment_index
        self._ended = True
        if index == 0:
            following = _read_fully(self._body, self._cipher_segment)
            if following > NONCE_SIZE + TAG_SIZE:
                segment = memoryview(self._cipher_segment)[:following]
                try:
                    self._cipher.decrypt(segment[:NONCE_SIZE], segment[NONCE_SIZE:], None)
                except InvalidTag:
                    return ForeignHeader(
                        0,
                        "the header's data key opens neither segment 0 nor segment 1 of this body: "
                        "the header belongs to another file",
                    )
                return SegmentAuthenticationError(
                    0, "segment 0 of the body fails its Poly1305 tag: corrupted"
                )
            return SegmentAuthenticationError(
                0,
                "segment 0, the body's only segment, fails its Poly1305 tag: corrupted, or the header "
                "belongs to another file",
            )
        return SegmentAuthenticationError(
            index, f"segment {index} of the body fails its Poly1305 tag: corrupted"
        )


def _read_fully(stream: BinaryIO, buffer: bytearray) -> int:
    """Fills ``buffer`` unless the stream ends first: a socket or an S3 stream may return
    short reads mid-body, which must not be taken for the body's short last segment."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled
