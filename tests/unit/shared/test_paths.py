"""The path guard: nothing built from an id, or handed over as a URL, leaves its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.paths import PathEscape, beneath, inside

ESCAPES = ["/tmp/victim", "..", ".", "", "a/../../b", "a//b", "../x", "a\\..\\b", "a\x00b", "a\u200bb", "/"]


@pytest.mark.parametrize("part", ESCAPES)
@pytest.mark.parametrize("root", ["/srv/genomhub/runs", "file:///srv/store", "s3://ngc-archive/store"])
def test_refuses_parts_that_climb_out_or_replace_the_root(root: str, part: str) -> None:
    with pytest.raises(PathEscape):
        beneath(root, "region", part, "name")


def test_a_path_root_cannot_be_replaced_by_an_absolute_id(tmp_path: Path) -> None:
    # pathlib's own join would give /tmp/victim itself: the harmoniser removed such a folder.
    assert tmp_path / "/tmp/victim" == Path("/tmp/victim")
    with pytest.raises(PathEscape):
        beneath(tmp_path, "/tmp/victim")


def test_joins_plain_parts_in_the_root_s_form(tmp_path: Path) -> None:
    assert beneath(tmp_path, "a", "b/c.txt") == tmp_path / "a" / "b" / "c.txt"
    assert beneath("s3://bucket/store/", "hovedstaden", "S-1") == "s3://bucket/store/hovedstaden/S-1"
    assert beneath(tmp_path.as_uri(), "x") == f"{tmp_path.as_uri()}/x"


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(PathEscape):
        beneath(root, "link", "file")
    with pytest.raises(PathEscape):
        beneath(root.as_uri(), "link")


def test_inside_checks_a_whole_url_against_its_root(tmp_path: Path) -> None:
    store = tmp_path.as_uri()
    assert inside(store, f"{store}/r/S-1/f.gz") == f"{store}/r/S-1/f.gz"
    for url in ["file:///etc/passwd", f"{store}/../etc/passwd", f"{store}x/f", store, f"{store}/"]:
        with pytest.raises(PathEscape):
            inside(store, url)


segment = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=12)


@given(st.lists(segment, min_size=1, max_size=4))
def test_property_whatever_the_parts_the_result_stays_below_the_root(parts: list[str]) -> None:
    root = "/srv/genomhub/runs"
    try:
        path = beneath(root, *parts)
    except PathEscape:
        return
    normal = os.path.normpath(path)
    assert normal.startswith(root + "/") and normal != root
    assert os.path.normpath(beneath(Path(root), *parts)) == normal
