"""Reading only what is really inside an inbox (shared.storage.open_inside), on a real disk."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.encryption import ArchiveKey
from shared.storage import ArchiveWriter, OutsideRoot, Readable, copy_into, open_archived, open_inside


def read_all(handle: Readable) -> bytes:
    """Everything left in ``handle``, which is then closed."""
    out, buffer = bytearray(), bytearray(1 << 16)
    try:
        while got := handle.readinto(memoryview(buffer)):
            out += buffer[:got]
    finally:
        handle.close()
    return bytes(out)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two regions' inboxes side by side, with links of every kind inside the first."""
    top = tmp_path_factory.mktemp("inboxes")
    mine, theirs = top / "hovedstaden", top / "sjaelland"
    (mine / "run").mkdir(parents=True)
    theirs.mkdir()
    (mine / "run" / "R1.fastq.gz").write_bytes(b"mine")
    (theirs / "R2.fastq.gz").write_bytes(b"theirs")
    (top / "secret").write_bytes(b"outside")
    (mine / "to-passwd").symlink_to("/etc/passwd")
    (mine / "to-theirs").symlink_to(theirs / "R2.fastq.gz")
    (mine / "theirs-dir").symlink_to(theirs, target_is_directory=True)
    (mine / "etc-dir").symlink_to("/etc", target_is_directory=True)
    (mine / "up").symlink_to("..", target_is_directory=True)
    (mine / "to-own").symlink_to(mine / "run" / "R1.fastq.gz")  # a link that stays inside
    os.mkfifo(mine / "fifo")
    os.link(theirs / "R2.fastq.gz", mine / "hard-theirs")  # a second name of another region's file
    yield top


def test_a_real_file_in_the_inbox_is_read(tree: Path) -> None:
    inbox = (tree / "hovedstaden").as_uri()
    assert read_all(open_inside(f"{inbox}/run/R1.fastq.gz", inbox)) == b"mine"
    assert read_all(open_inside(f"{inbox}/to-own", inbox)) == b"mine"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("to-passwd", "outside"),
        ("to-theirs", "outside"),
        ("theirs-dir/R2.fastq.gz", "outside"),
        ("etc-dir/passwd", "outside"),
        ("up/secret", "outside"),
        ("up/sjaelland/R2.fastq.gz", "outside"),
        ("run/../../secret", "outside"),
        ("fifo", "not a regular file"),
        ("hard-theirs", "other hard links"),
        ("run", "not a regular file"),
    ],
)
def test_links_climbs_and_non_files_are_refused(tree: Path, name: str, why: str) -> None:
    inbox = (tree / "hovedstaden").as_uri()
    with pytest.raises(OutsideRoot, match=why):
        open_inside(f"{inbox}/{name}", inbox)


def test_copy_into_refuses_before_writing_anything(
    tree: Path, tmp_path: Path, archive_writer: ArchiveWriter, archive_key: ArchiveKey
) -> None:
    inbox = (tree / "hovedstaden").as_uri()
    with pytest.raises(OutsideRoot):
        copy_into(f"{inbox}/to-passwd", (tmp_path / "copy").as_uri(), archive_writer, inside=inbox)
    assert not list(tmp_path.iterdir())
    stored = copy_into(f"{inbox}/run/R1.fastq.gz", (tmp_path / "copy").as_uri(), archive_writer, inside=inbox)
    with open_archived(stored.url, stored.size, archive_writer.headers, archive_key) as archived:
        assert stored.size == 4 and archived.read() == b"mine"


def test_an_inbox_reached_through_a_link_still_holds_its_own_files(tree: Path, tmp_path: Path) -> None:
    mounted = tmp_path / "mounted"
    mounted.symlink_to(tree / "hovedstaden", target_is_directory=True)
    inbox = mounted.as_uri()
    assert read_all(open_inside(f"{inbox}/run/R1.fastq.gz", inbox)) == b"mine"
    with pytest.raises(OutsideRoot):
        open_inside(f"{inbox}/to-theirs", inbox)


@pytest.mark.parametrize(
    "key",
    [
        "s3://inbox/hovedstaden/../sjaelland/R2.fastq.gz",
        "s3://inbox/hovedstaden/./R1",
        "s3://inbox/hovedstaden//R1",
        "s3://inbox/hovedstadenX/R1",
        "s3://other/hovedstaden/R1",
        "s3://inbox/hovedstaden",
    ],
)
def test_object_keys_must_be_under_the_prefix_after_normalising(key: str) -> None:
    with pytest.raises(OutsideRoot):
        open_inside(key, "s3://inbox/hovedstaden")


def test_another_filesystem_is_refused(tree: Path) -> None:
    with pytest.raises(OutsideRoot):
        open_inside("s3://inbox/hovedstaden/R1", (tree / "hovedstaden").as_uri())


SEGMENTS = st.sampled_from(
    [
        *("run", "R1.fastq.gz", "..", ".", "", "to-passwd", "to-theirs", "theirs-dir", "etc-dir", "up"),
        *("to-own", "sjaelland", "hovedstaden", "secret", "passwd", "R2.fastq.gz", "fifo", "hard-theirs"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTS, min_size=1, max_size=6))
def test_whatever_is_opened_is_a_file_really_inside_the_inbox(tree: Path, segments: list[str]) -> None:
    """Any name made of the tree's links, climbs and files: refused, missing, or really inside."""
    root = tree / "hovedstaden"
    inbox = root.as_uri()
    try:
        handle = open_inside(f"{inbox}/{'/'.join(segments)}", inbox)
    except (OutsideRoot, FileNotFoundError, NotADirectoryError):
        return
    assert isinstance(handle, io.FileIO)
    real = Path(os.readlink(f"/proc/self/fd/{handle.fileno()}"))
    assert real.is_relative_to(root.resolve()) and real.is_file()
    assert read_all(handle) == b"mine"
