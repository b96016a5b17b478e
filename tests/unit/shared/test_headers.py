"""The header store (shared/headers.py) and the one way to read an archived file
(shared.storage.open_archived): bodies and headers apart, joined only when read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.encryption import (
    ArchiveKey,
    BodyEncryptor,
    SegmentAuthenticationError,
    TruncatedBody,
    encrypt_chunks,
    load_archive_key,
    write_key_pair,
)
from shared.headers import HEADER_SUFFIX, HeaderStore, MissingHeader
from shared.paths import PathEscape
from shared.storage import open_archived

PASSPHRASE = "a passphrase for the test"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ArchiveKey:
    secret, public = write_key_pair(tmp_path_factory.mktemp("key"), PASSPHRASE)
    return load_archive_key(secret, public, PASSPHRASE)


@pytest.fixture
def headers(tmp_path: Path) -> HeaderStore:
    return HeaderStore((tmp_path / "store").as_uri(), (tmp_path / "headers").as_uri())


def _archive(headers: HeaderStore, key: ArchiveKey, relative: str, plaintext: bytes) -> str:
    url = f"{headers.store}/{relative}"
    encryptor = BodyEncryptor(key.public)
    path = Path(url.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(encrypt_chunks(encryptor, [plaintext])))
    headers.write(url, encryptor.header)
    return url


def test_a_body_reads_back_as_its_plaintext(headers: HeaderStore, key: ArchiveKey) -> None:
    plaintext = bytes(range(256)) * 1000
    url = _archive(headers, key, "hovedstaden/S1/sub-1/reads_R1.fastq.gz", plaintext)
    with open_archived(url, len(plaintext), headers, key) as reader:
        assert io.BufferedReader(reader).read() == plaintext
    header = Path(headers.url_for(url).removeprefix("file://"))
    assert header.name == "reads_R1.fastq.gz" + HEADER_SUFFIX
    assert header.parent == Path(headers.headers.removeprefix("file://")) / "hovedstaden/S1/sub-1"
    assert list(headers.bodies()) == [url]


def test_the_body_on_disk_is_not_the_plaintext(headers: HeaderStore, key: ArchiveKey) -> None:
    plaintext = b"ACGT" * 50_000
    url = _archive(headers, key, "r/S/sub/x.vcf.gz", plaintext)
    stored = Path(url.removeprefix("file://")).read_bytes()
    assert b"ACGTACGT" not in stored


def test_a_body_without_its_header_cannot_be_read(headers: HeaderStore, key: ArchiveKey) -> None:
    url = _archive(headers, key, "r/S/sub/x.cram", b"x" * 10)
    headers.remove(url)
    with pytest.raises(MissingHeader, match="no Crypt4GH header"):
        open_archived(url, 10, headers, key)


def test_the_recorded_size_is_held_to(headers: HeaderStore, key: ArchiveKey) -> None:
    url = _archive(headers, key, "r/S/sub/x.cram", b"x" * 200_000)
    with open_archived(url, 300_000, headers, key) as reader, pytest.raises(TruncatedBody):
        io.BufferedReader(reader).read()


def test_another_files_header_opens_nothing(headers: HeaderStore, key: ArchiveKey) -> None:
    first = _archive(headers, key, "r/S/sub/a.cram", b"a" * 200_000)
    second = _archive(headers, key, "r/S/sub/b.cram", b"b" * 200_000)
    headers.write(second, headers.read(first))
    with open_archived(second, 200_000, headers, key) as reader, pytest.raises(SegmentAuthenticationError):
        io.BufferedReader(reader).read()


def test_a_rewritten_header_replaces_the_old_one_whole(headers: HeaderStore, key: ArchiveKey) -> None:
    url = _archive(headers, key, "r/S/sub/a.cram", b"a")
    headers.write(url, b"new")
    assert headers.read(url) == b"new"
    folder = Path(headers.url_for(url).removeprefix("file://")).parent
    assert sorted(p.name for p in folder.iterdir()) == ["a.cram" + HEADER_SUFFIX]


def test_a_body_outside_the_store_has_no_header_place(headers: HeaderStore) -> None:
    with pytest.raises(PathEscape):
        headers.url_for("file:///etc/passwd")
    with pytest.raises(PathEscape):
        headers.url_for(f"{headers.store}/r/../../x")


def test_an_oversized_header_object_is_refused_unread(headers: HeaderStore, key: ArchiveKey) -> None:
    url = _archive(headers, key, "r/S/sub/a.cram", b"a")
    Path(headers.url_for(url).removeprefix("file://")).write_bytes(b"h" * (1 << 20))
    with pytest.raises(MissingHeader, match="larger than"):
        headers.read(url)
