"""The guards' shortcuts for plain text answer exactly as the full guards do.

A replay reads every event of the log, so the CPR and hidden-character guards take cheaper
paths where the text allows (ASCII, JSON without escapes). A shortcut that answered
differently would let through what the guard refuses; these tests hold each one to the
path it skips.
"""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.identifiers import (
    contains_cpr,
    digit_clusters,
    first_direct_identifier,
    json_names_may_hold_cpr,
    json_texts,
    may_hold_cpr,
)
from shared.paths import hidden_characters

TYPED = st.text(alphabet="0123456789" * 3 + '-. _/:,;+~\t\x00\x7f"\\xT', max_size=40)
"""ASCII as CPR numbers are typed: digits, separators, control characters, letters."""
LETTER = "\u00e9"
"""A non-ASCII letter: ends a cluster and leaves NFKC alone, but takes the general path."""


@settings(max_examples=500, deadline=None)
@given(TYPED)
def test_ascii_clustering_is_the_general_clustering(text: str) -> None:
    assert digit_clusters(text) == digit_clusters(text + LETTER)
    assert contains_cpr(text) == contains_cpr(text + LETTER)


NAMES = st.text(alphabet='0123456789-. _:"\\x' + LETTER + "\u200b\uff11", max_size=14)


@settings(max_examples=120, deadline=None)
@given(
    st.dictionaries(
        NAMES, st.one_of(st.integers(), NAMES, st.lists(st.dictionaries(NAMES, NAMES))), min_size=1
    ),
    st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 2}, {"separators": (",", ":")}]),
)
def test_a_cpr_in_a_field_name_is_never_skipped(
    document: dict[str, object], style: dict[str, object]
) -> None:
    raw = json.dumps(document, **style).encode()  # type: ignore[arg-type]
    if first_direct_identifier(json_texts(json.loads(raw), keys_only=True)) is not None:
        assert json_names_may_hold_cpr(raw)


def test_names_are_cleared_only_when_plain() -> None:
    assert not json_names_may_hold_cpr(b'{"sample_id": "S0101901234", "n": 1010190123}')  # values: not names
    assert not json_names_may_hold_cpr('{"afdeling": "Århus", "x": [{"y": 1}]}'.encode())
    assert json_names_may_hold_cpr(b'{"0101901234": 1}')
    assert json_names_may_hold_cpr(b'{"a": {"01-01-90 1234" : 1}}')
    assert json_names_may_hold_cpr(b'{"\\u0030101901234": 1}')  # an escape: walked, not scanned
    assert json_names_may_hold_cpr('{"０１０１９０１２３４": 1}'.encode())  # full-width digits
    for encoding in ("utf-16", "utf-16-le", "utf-32-be"):  # the parser reads these too
        assert json_names_may_hold_cpr('{"a": 1, "ȢȢ0101901234": 2}'.encode(encoding))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=6))
def test_hidden_characters_by_category(text: str) -> None:
    categories = [unicodedata.category(c) for c in text]
    assert hidden_characters(text) == any(c.startswith("C") or c in ("Zl", "Zp") for c in categories)


URLS = st.text(alphabet="0123456789" * 3 + "/?#:@.-_ \t\r\nxs", max_size=40).map(lambda t: "file:///" + t)


@settings(max_examples=500, deadline=None)
@given(URLS)
def test_a_url_that_cannot_hold_a_cpr_has_no_part_that_can(url: str) -> None:
    parts = urlsplit(url)  # drops tabs and line breaks: the parts are not all substrings
    if any(contains_cpr(p) for p in (parts.netloc, *parts.path.split("/"), parts.query, parts.fragment)):
        assert may_hold_cpr(url)
