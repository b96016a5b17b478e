"""CSV cells a spreadsheet opens safely (``shared.spreadsheet``), for any text."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from shared.spreadsheet import FORMULA_STARTS, SafeDictWriter, formula_risk, safe_cell

cells = st.text() | st.sampled_from(FORMULA_STARTS).flatmap(lambda c: st.text().map(lambda t: c + t))


@given(cells)
def test_a_cell_never_starts_like_a_formula_and_keeps_its_text(value: str) -> None:
    safe = safe_cell(value)
    assert not formula_risk(safe)
    assert safe == value or safe == "'" + value
    assert (safe != value) == value.startswith(FORMULA_STARTS)


@given(st.lists(st.tuples(cells, cells), min_size=1, max_size=5))
def test_rows_read_back_as_written_whatever_their_cells_hold(rows: list[tuple[str, str]]) -> None:
    out = io.StringIO()
    writer = SafeDictWriter(out, ["a", "b"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({"a": a, "b": b} for a, b in rows)
    read = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert [(r["a"], r["b"]) for r in read] == [(safe_cell(a), safe_cell(b)) for a, b in rows]


def test_numbers_stay_numbers() -> None:
    assert safe_cell(-264) == -264 and safe_cell(0.5) == 0.5
