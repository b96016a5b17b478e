"""The statement page's parts without a browser: axes, precision, Danish words and dates."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from services.billing.accrual import accrual_of
from services.billing.charts import MonthGe, balance_chart, ge_chart, kroner_label, nice_axis, places_for
from services.billing.money import format_ge_danish, format_ge_exact, ge_places
from services.billing.report import render
from services.billing.store import BillingStore, LedgerEntry
from shared.danish import local_moment, month_name, region_name
from shared.events import MICRO_GE, Region, micro_to_ge
from tests.unit.billing.billing_factories import indexed

UNITS = st.integers(min_value=1, max_value=10**15)


@given(UNITS)
def test_an_axis_is_nice_and_covers_its_peak(peak: int) -> None:
    axis = nice_axis(peak, empty_top=MICRO_GE)
    ticks = axis.ticks
    assert ticks[0] == 0 and ticks[-1] == axis.top >= peak
    assert 2 <= len(ticks) <= 6 and len(set(ticks)) == len(ticks)
    digits = str(axis.step).rstrip("0")
    assert digits in ("1", "2", "5")
    # the tallest value fills at least a third of the axis, so its bar is seen
    assert peak * 3 > axis.top


@given(UNITS)
def test_axis_labels_are_distinct_and_exact(peak: int) -> None:
    axis = nice_axis(peak, empty_top=MICRO_GE)
    places = places_for(axis.step, 6)
    labels = [format_ge_danish(micro_to_ge(t), places) for t in axis.ticks]
    assert len(set(labels)) == len(labels)
    for tick, label in zip(axis.ticks, labels, strict=True):
        assert Decimal(label.replace(".", "").replace(",", ".")) * MICRO_GE == tick
    kroner = [kroner_label(t, places_for(axis.step, 2)) for t in axis.ticks]
    assert len(set(kroner)) == len(kroner)


def test_demo_sized_samples_get_a_readable_axis() -> None:
    """Five regions of 0.000043 GE each: the axis once read 0, 0, 1, 1, 1 with no bars."""
    month = MonthGe("2026-12", True, dict.fromkeys(Region, 43))
    svg = ge_chart([month], list(Region))
    ticks = re.findall(r"class='y-tick'[^>]*>([^<]+)<", svg)
    assert ticks == ["0,00000", "0,00001", "0,00002", "0,00003", "0,00004", "0,00005"]
    heights = [float(h) for h in re.findall(r"class='bar'[^>]* height='([\d.]+)'", svg)]
    assert len(heights) == 5 and min(heights) > 100  # of a 240 px plot


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=20))
def test_one_precision_writes_every_genome_equivalent_exactly(micros: list[int]) -> None:
    values = [micro_to_ge(m) for m in micros]
    places = ge_places(values)
    assert 2 <= places <= 6
    for micro, value in zip(micros, values, strict=True):
        text = format_ge_danish(value, places)
        assert Decimal(text.replace(".", "").replace(",", ".")) == value
        assert micro == 0 or re.fullmatch(r"0,0+", text) is None


def test_a_sentence_writes_its_genome_equivalents_with_what_they_need() -> None:
    assert format_ge_exact(Decimal("2016")) == "2.016,00"
    assert format_ge_exact(Decimal("0.000215")) == "0,000215"


def test_close_is_in_copenhagen_time_winter_and_summer() -> None:
    assert local_moment(datetime(2026, 2, 16, 23, 30, tzinfo=UTC)) == "17. februar 2026 kl. 00.30 (CET)"
    assert local_moment(datetime(2026, 7, 1, 6, 5, 9, 123456, tzinfo=UTC)) == "1. juli 2026 kl. 08.05 (CEST)"
    assert month_name("2026-01") == "januar 2026" and region_name("sjaelland") == "Region Sjælland"


def _entry(n: int, balance: int, at: datetime, kind: str = "top-up") -> LedgerEntry:
    return LedgerEntry(n, kind, 100, balance, None, None, "finance", at, "")


def test_balance_chart_labels_each_day_once() -> None:
    """Three top-ups on one day once gave three identical x labels."""
    day = datetime(2026, 2, 10, 9, tzinfo=UTC)
    entries = [_entry(i, 100 * (i + 1), day.replace(minute=i)) for i in range(3)]
    entries.append(_entry(3, 50, datetime(2026, 3, 2, 9, tzinfo=UTC), kind="month-close"))
    labels = re.findall(r"class='x-tick'[^>]*>([^<]+)<", balance_chart(entries))
    assert labels == ["10.02.2026", "02.03.2026"]


def test_month_labels_that_would_overlap_are_thinned() -> None:
    months = [
        MonthGe(f"{2024 + i // 12}-{i % 12 + 1:02d}", True, {Region.SJAELLAND: MICRO_GE}) for i in range(36)
    ]
    svg = ge_chart(months, [Region.SJAELLAND])
    xs = [float(x) for x in re.findall(r"class='x-tick' x='([\d.]+)'", svg)]
    labels = re.findall(r"class='x-tick'[^>]*>([^<]+)<", svg)
    assert 2 <= len(labels) < 36 and len(set(labels)) == len(labels)
    assert all(b - a > 9 * 6.2 for a, b in itertools.pairwise(xs))


def test_page_names_regions_and_departments_with_their_letters(tmp_path: Path) -> None:
    store = BillingStore(f"sqlite:///{tmp_path / 'billing.sqlite'}")
    store.add_to_grant(1_000_00, by="finance", at=datetime(2026, 2, 1, tzinfo=UTC))
    accrual = accrual_of(indexed("S1", region=Region.SJAELLAND, department="SUH Køge", ge="0.000043"), "e1")
    assert accrual is not None
    store.accrue(accrual)
    store.close("2026-01", standard_rate_dkk=300, now=datetime(2026, 2, 2, tzinfo=UTC), by="finance")
    page = render(store, "2026-01", "html", None)
    assert "Region Sjælland" in page and "SUH Køge" in page and ">sjaelland<" not in page
    assert "0,000043" in page and "0,01 kr." in page and ">0,00<" not in page
    assert "2. februar 2026 kl. 01.00 (CET)" in page and "T00:00:00" not in page
    assert "@media print" in page and "size:A4" in page
