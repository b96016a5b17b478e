"""The refund statement page as a finance reader sees it, rendered by headless Chromium.

Three months a reader meets: January 2026 from the minutes (2,016 GE, balance-limited at
264 kr.), a month of five tiny samples under the `bases` rule (0.000043 GE each, a few øre),
and January as Region Sjælland sees it. Each is read at two screen widths and at the width
of an A4 page in print, and kept as a screenshot and a PDF under ``test-artefacts/browser``.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from services.billing.accrual import accrual_of
from services.billing.report import render
from services.billing.store import BillingStore
from shared.events import Region
from shared.synthetic import DEPARTMENTS
from tests.unit.billing.billing_factories import indexed
from tools.stack.demo import record_minutes_month

SCREEN_WIDTHS = (1280, 800)
A4_CONTENT_PX = round((210 - 2 * 12) / 25.4 * 96)
"""A4's width less the print stylesheet's 12 mm side margins, in CSS pixels (96 per inch)."""
REGION_NAMES = (
    "Region Hovedstaden",
    "Region Sjælland",
    "Region Syddanmark",
    "Region Midtjylland",
    "Region Nordjylland",
)
ENGLISH = (
    "Statement",
    "Genome equivalents",
    "Balance",
    "Refund",
    "Closed",
    "Samples",
    "Department",
    "(open)",
    "Per region",
    "refund of",
    "genome equivalent",
)
LOCAL_MOMENT = re.compile(r"\d{1,2}\. [a-zæøå]+ \d{4} kl\. \d\d\.\d\d \((CET|CEST)\)")
RAW_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\+00:00|\d\d:\d\d:\d\d\.\d+")
DANISH_NUMBER = re.compile(r"^-?\d{1,3}(\.\d{3})*(,\d+)?$")

PAGE = """
const doc = document.documentElement;
const clean = s => s.replace(/\\u00ad/g, '').trim();
return {
  lang: doc.lang,
  text: document.body.innerText,
  scroll: doc.scrollWidth,
  client: doc.clientWidth,
  height: doc.scrollHeight,
  wide: [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > doc.clientWidth + 0.5)
    .map(e => e.tagName + ' ' + clean(e.textContent).slice(0, 40)),
  tables: [...document.querySelectorAll('table')].map(t => ({
    caption: t.caption ? clean(t.caption.textContent) : '',
    head: [...t.querySelectorAll('thead th')].map(th => clean(th.textContent)),
    rows: [...t.querySelectorAll('tbody tr, tfoot tr')].map(tr => [...tr.cells].map(c => clean(c.textContent))),
  })),
  charts: [...document.querySelectorAll('svg')].map(s => ({
    y: [...s.querySelectorAll('.y-tick')].map(t => t.textContent),
    x: [...s.querySelectorAll('.x-tick')].map(t => {
      const b = t.getBoundingClientRect(); return [t.textContent, b.left, b.right];
    }),
    bars: [...s.querySelectorAll('rect.bar')].map(r => [
      r.querySelector('title').textContent, r.getBoundingClientRect().height,
    ]),
  })),
};
"""


def danish(number: str) -> Decimal:
    assert DANISH_NUMBER.match(number), f"{number!r} is not written the Danish way"
    return Decimal(number.replace(".", "").replace(",", "."))


def minutes_january(url: str) -> BillingStore:
    store = BillingStore(url)
    record_minutes_month(store, 300)
    # February is still open: it is charted from its accruals, hatched
    february = datetime(2026, 2, 20, 9, tzinfo=UTC)
    for n, region in enumerate(Region):
        accrual = accrual_of(
            indexed(f"FEB-{n}", region=region, department=DEPARTMENTS[region][0], received_at=february),
            f"feb-{n}",
        )
        assert accrual is not None
        store.accrue(accrual)
    return store


def tiny_march(url: str) -> BillingStore:
    """Five demo-sized samples under the `bases` rule: 0.000043 GE each, øre of refund."""
    store = BillingStore(url)
    store.add_to_grant(532_281_00, by="finance", at=datetime(2026, 3, 1, tzinfo=UTC))
    received = datetime(2026, 3, 10, 11, tzinfo=UTC)
    for n, region in enumerate(Region):
        sample = indexed(
            f"TINY-{n}", region=region, department=DEPARTMENTS[region][0], received_at=received, ge="0.000043"
        )
        accrual = accrual_of(sample, f"tiny-{n}")
        assert accrual is not None
        store.accrue(accrual)
    store.close("2026-03", standard_rate_dkk=300, now=datetime(2026, 4, 2, 6, 30, tzinfo=UTC), by="finance")
    return store


CASES: dict[str, tuple[Any, str, Region | None]] = {
    "minutes-january-2026": (minutes_january, "2026-01", None),
    "tiny-march-2026": (tiny_march, "2026-03", None),
    "minutes-january-2026-sjaelland": (minutes_january, "2026-01", Region.SJAELLAND),
}


@pytest.fixture(params=list(CASES))
def page(request: pytest.FixtureRequest, tmp_path: Path, artefacts: Path) -> Iterator[tuple[str, Path]]:
    make, month, region = CASES[request.param]
    store = make(f"sqlite:///{tmp_path / 'billing.sqlite'}")
    html = artefacts / f"{request.param}.html"
    html.write_text(render(store, month, "html", region), encoding="utf-8")
    store.dispose()
    yield request.param, html


def measure(browser: webdriver.Chrome, width: int, media: str) -> dict[str, Any]:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": media})
    result: dict[str, Any] = browser.execute_script(PAGE)
    return result


def check_layout(found: dict[str, Any], where: str) -> None:
    assert not found["wide"], f"{where}: these stick out on the right: {found['wide']}"
    assert found["scroll"] <= found["client"], f"{where}: the page scrolls sideways"
    for chart in found["charts"]:
        xs = chart["x"]
        assert len({t for t, _, _ in xs}) == len(xs), f"{where}: x labels repeat: {xs}"
        for (a, _, a_right), (b, b_left, _) in itertools.pairwise(xs):
            assert a_right <= b_left, f"{where}: x labels {a!r} and {b!r} overlap"


def check_reading(name: str, found: dict[str, Any], region: Region | None) -> None:
    text = found["text"]
    assert found["lang"] == "da"
    assert text.startswith("Refusionsopgørelse for ")
    for english in ENGLISH:
        assert english.lower() not in text.lower(), f"{english!r} on the Danish page"
    assert LOCAL_MOMENT.search(text), "the close is not in Copenhagen time"
    assert not RAW_TIMESTAMP.search(text), f"a raw timestamp: {RAW_TIMESTAMP.search(text)}"
    shown = REGION_NAMES if region is None else ("Region Sjælland",)
    for region_name in shown:
        assert region_name in text
    assert "sjaelland" not in text.lower() and "Koege" not in text
    assert "SUH Køge" in text
    if region is not None:
        assert "Region Hovedstaden" not in text and "Bevillingens saldo" not in text
    tables = {t["caption"]: t for t in found["tables"]}
    for caption in ("Pr. region", "Pr. region, afdeling og analysetype"):
        table = tables[caption]
        ge_col = table["head"].index("Genomækvivalenter")
        refund_col = table["head"].index("Refusion")
        assert table["rows"]
        for row in table["rows"]:
            if len(row) == 1:  # a region's row group starts under its name
                assert row[0] in shown
                continue
            ge, refund = row[ge_col], row[refund_col]
            assert refund.endswith(" kr.")
            paid = danish(refund.removesuffix(" kr.")) > 0
            assert not paid or danish(ge) > 0, f"{caption}: {ge} genome equivalents beside {refund}"
    if name.startswith("minutes-january") and region is None:
        assert "264,00 kr." in text and "532.281,00 kr." in text and "532.224,00 kr." in text
        assert "57,00 kr." in text and "2.016,00" in text and "Satsen er begrænset" in text
    if name.startswith("tiny"):
        assert "0,000043" in text and "0,01 kr." in text and "0,000215" in text
    for chart in found["charts"]:
        ticks = [danish(t.removesuffix(" kr.")) for t in chart["y"]]
        assert len(set(ticks)) == len(ticks) >= 2, f"y ticks not distinct: {chart['y']}"
        steps = {b - a for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1 and ticks[0] == 0, f"y ticks not evenly spaced from 0: {chart['y']}"
        mantissa = steps.pop().normalize().as_tuple().digits
        assert mantissa in ((1,), (2,), (5,)), f"y step is not 1, 2 or 5 x 10^k: {chart['y']}"
        for title, height in chart["bars"]:
            value = danish(re.findall(r": ([\d.,]+) genomækvivalenter", title)[0])
            assert value <= ticks[-1], f"{title} above the axis ({chart['y']})"
            assert value == 0 or height >= 1.5, f"{title}: bar not visible ({height:.2f} px)"


def test_statement_page_reads_right_on_screen_and_a4(
    browser: webdriver.Chrome, page: tuple[str, Path], artefacts: Path
) -> None:
    name, html = page
    region = CASES[name][2]
    browser.get(html.as_uri())
    try:
        for width in SCREEN_WIDTHS:
            found = measure(browser, width, "screen")
            check_layout(found, f"screen {width} px")
            check_reading(name, found, region)
            if width == SCREEN_WIDTHS[0]:
                keep_screenshot(browser, found["height"], width, artefacts / f"{name}.png")
        printed = measure(browser, A4_CONTENT_PX, "print")
        check_layout(printed, f"A4 print ({A4_CONTENT_PX} px)")
        check_reading(name, printed, region)
        keep_screenshot(browser, printed["height"], A4_CONTENT_PX, artefacts / f"{name}-print.png")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    pdf = base64.b64decode(
        browser.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True})[
            "data"
        ]
    )
    (artefacts / f"{name}.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF")
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert boxes, "the PDF names no page size"
    for w, h in boxes:  # A4 is 595 x 842 points
        assert abs(float(w) - 595.3) < 1 and abs(float(h) - 841.9) < 1, f"page {w!r} x {h!r} is not A4"


def keep_screenshot(browser: webdriver.Chrome, height: int, width: int, path: Path) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
