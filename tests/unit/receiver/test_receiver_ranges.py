"""Where a PUT's body goes in the file."""

from __future__ import annotations

import pytest

from services.receiver.ranges import BadRange, Placement, placement


def test_whole_file_without_headers() -> None:
    assert placement(None, None, 100) == Placement(0, 100, 100)


def test_upload_offset_continues_to_the_end() -> None:
    place = placement("40", None, 60)
    assert place == Placement(40, 60, 100)
    assert place.ends_file


@pytest.mark.parametrize(
    ("header", "length", "expected"),
    [
        ("bytes 40-*/*", 60, Placement(40, 60, 100)),
        ("bytes 0-49/100", 50, Placement(0, 50, 100)),
        ("bytes 50-99/100", 50, Placement(50, 50, 100)),
        ("bytes 0-49/*", 50, Placement(0, 50, 50)),
    ],
)
def test_content_range(header: str, length: int, expected: Placement) -> None:
    assert placement(None, header, length) == expected


def test_a_piece_that_does_not_end_the_file() -> None:
    assert not placement(None, "bytes 0-49/100", 50).ends_file


@pytest.mark.parametrize(
    ("offset", "header", "length"),
    [
        ("-1", None, 10),
        ("ten", None, 10),
        (None, "bytes=0-9/10", 10),
        (None, "bytes 0-9/10", 11),
        (None, "bytes 0-9/5", 10),
        ("5", "bytes 0-*/*", 10),
    ],
)
def test_contradictions_are_refused(offset: str | None, header: str | None, length: int) -> None:
    with pytest.raises(BadRange):
        placement(offset, header, length)


@pytest.mark.parametrize(
    ("offset", "header"),
    [
        ("²", None),
        ("٣", None),
        ("1²", None),
        (None, "bytes ²-*/*"),
        (None, "bytes 0-9/1٣"),
    ],
)
def test_only_ascii_digits_are_offsets(offset: str | None, header: str | None) -> None:
    """Latin-1 headers can carry "²", which ``str.isdigit`` takes and ``int`` refuses."""
    with pytest.raises(BadRange):
        placement(offset, header, 10)
