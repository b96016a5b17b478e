"""The region's portal as its people use it, in headless Chromium: a clinician at Odense
(Region Syddanmark) asks on her spoke whether the national database holds data on a patient,
requests a working copy of what Hovedstaden holds, Hovedstaden's data steward grants it on
Hovedstaden's spoke, the clinician's spoke shows the granted record from its next verified
revision, she fetches the copy (encrypted to her department's key, which the ``crypt4gh``
command line opens to the very bytes archived), the steward reads the audit trail and
revokes, and the copy is no longer offered. Each step is kept as a screenshot under
``test-artefacts/browser``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

from shared.events import AccessDecided, AccessRequested, AccessRevoked, Region, WorkingCopyIssued
from tests.browser.portal_world import (
    DEPARTMENT,
    DEPARTMENT_PASSPHRASE,
    OWN,
    OWNED,
    PATIENT,
    World,
    started_world,
)
from tests.support import crypt4gh_decrypt

CASE = "OUH-2026-0042"

PAGE_CHECK = """
const missing = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.closest('label') && !e.getAttribute('aria-label'))
  .map(e => e.name);
return {
  lang: document.documentElement.lang,
  h1: [...document.querySelectorAll('h1')].map(h => h.textContent),
  scripts: document.querySelectorAll('script').length,
  unlabelled: missing,
  skip: !!document.querySelector('a.skip[href="#main"]'),
};
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from started_world(tmp_path_factory.mktemp("portal"))


def shot(browser: webdriver.Chrome, artefacts: Path, name: str) -> None:
    browser.set_window_size(1280, 900)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(900, int(height)))
    assert browser.save_screenshot(str(artefacts / f"portal-{name}.png"))


def checked(browser: webdriver.Chrome, lang: str = "da") -> dict[str, Any]:
    """What every page must be: one h1, the page's language, no script, every field labelled."""
    found: dict[str, Any] = browser.execute_script(PAGE_CHECK)
    assert found["lang"] == lang and len(found["h1"]) == 1, found
    assert found["scripts"] == 0 and found["unlabelled"] == [] and found["skip"], found
    return found


def sign_in(browser: webdriver.Chrome, portal: str, token: str) -> None:
    browser.get(f"{portal}/portal/")
    assert browser.current_url.endswith("/portal/login")  # not signed in: sent to sign in
    checked(browser)
    field = browser.find_element(By.ID, "token")
    field.send_keys(token)
    follow(browser, field, submit=True)
    assert browser.current_url.endswith("/portal/")


def button(browser: webdriver.Chrome, label: str) -> WebElement:
    return browser.find_element(By.XPATH, f"//button[normalize-space()='{label}']")


def follow(browser: webdriver.Chrome, element: WebElement, *, submit: bool = False) -> None:
    """Click a link or button (or submit a field's form) and wait for the next page: a click
    returns before a navigation it starts is done."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.submit() if submit else element.click()
    WebDriverWait(browser, 20).until(staleness_of(page))


def standing(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, "[data-standing]").get_attribute("data-standing"))


def test_the_access_story_through_the_regions_portals(
    world: World, browser: webdriver.Chrome, artefacts: Path, tmp_path: Path
) -> None:
    syd, rh = world.portals[Region.SYDDANMARK], world.portals[Region.HOVEDSTADEN]
    browser.delete_all_cookies()

    # A wrong token, and another region's, are refused at the door.
    browser.get(f"{syd}/portal/login")
    shot(browser, artefacts, "01-sign-in")
    field = browser.find_element(By.ID, "token")
    field.send_keys("not-a-token")
    follow(browser, field, submit=True)
    assert "invalid token" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    field = browser.find_element(By.ID, "token")
    field.send_keys("rh-steward")
    follow(browser, field, submit=True)
    assert "own region's spoke" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text

    # The clinician signs in on Syddanmark's spoke: the mirror's revision, her own sample whole,
    # Hovedstaden's as discovery sees it.
    sign_in(browser, syd, "ouh-clinician")
    checked(browser)
    mirror = browser.find_element(By.CSS_SELECTOR, ".mirror [data-revision]")
    first_revision = int(mirror.get_attribute("data-revision") or 0)
    assert first_revision >= 1
    rows = {
        r.find_elements(By.TAG_NAME, "td")[1].text: r.get_attribute("data-kind") for r in catalogue(browser)
    }
    assert rows == {OWN: "record", OWNED: "summary"}
    assert "Rigshospitalet" not in browser.page_source  # another region's department never reaches a spoke
    shot(browser, artefacts, "02-overview")

    # Discovery: Hovedstaden holds one sample of the patient.
    browser.find_element(By.ID, "patient").send_keys(PATIENT)
    browser.find_element(By.ID, "case_reference").send_keys(CASE)
    follow(browser, button(browser, "Spørg"))
    checked(browser)
    assert browser.find_element(By.CSS_SELECTOR, "[data-exists]").get_attribute("data-exists") == "yes"
    held = browser.find_element(By.CSS_SELECTOR, "tr[data-region=hovedstaden]")
    assert held.find_elements(By.TAG_NAME, "td")[0].text == "1"
    assert OWNED not in held.text  # another region's sample names are not discovery's to give
    shot(browser, artefacts, "03-discovery")

    # The request, from the answer's link: the form comes filled with owner, patient and case.
    follow(browser, held.find_element(By.LINK_TEXT, "Anmod om arbejdskopi"))
    checked(browser)
    assert (
        Select(browser.find_element(By.ID, "owner")).first_selected_option.get_attribute("value")
        == "hovedstaden"
    )
    assert browser.find_element(By.ID, "patient").get_attribute("value") == PATIENT
    assert browser.find_element(By.ID, "case_reference").get_attribute("value") == CASE
    browser.find_element(By.ID, "department").send_keys(DEPARTMENT)
    Select(browser.find_element(By.ID, "urgency")).select_by_value("urgent")
    shot(browser, artefacts, "04-request-form")
    follow(browser, button(browser, "Send anmodning"))
    checked(browser)
    assert standing(browser) == "pending"
    request_url = browser.current_url
    request_id = request_url.rsplit("/", 1)[1]
    (asked,) = [e for e in world.sent if isinstance(e, AccessRequested)]
    assert asked.request_id == request_id and asked.case_reference == CASE and asked.urgency == "urgent"
    assert [s.sample_id for s in asked.samples] == [OWNED]
    assert not browser.find_elements(
        By.XPATH, "//button[normalize-space()='Giv adgang']"
    )  # not hers to decide
    shot(browser, artefacts, "05-request-pending")

    # Hovedstaden's data steward, on Hovedstaden's spoke, finds it in the inbox and grants it.
    sign_in(browser, rh, "rh-steward")
    follow(browser, browser.find_element(By.LINK_TEXT, "Anmodninger"))
    checked(browser)
    inbox = browser.find_element(By.CSS_SELECTOR, f"tr[data-request='{request_id}']")
    assert "Afventer afgørelse" in inbox.text
    shot(browser, artefacts, "06-steward-inbox")
    follow(browser, inbox.find_element(By.TAG_NAME, "a"))
    browser.find_element(By.ID, "reason").send_keys("Behandling af patienten på OUH")
    shot(browser, artefacts, "07-steward-decides")
    follow(browser, button(browser, "Giv adgang"))
    checked(browser)
    assert standing(browser) == "granted"
    (decided,) = [e for e in world.sent if isinstance(e, AccessDecided)]
    assert decided.granted and decided.decided_by == Region.HOVEDSTADEN

    # Back on Syddanmark's spoke: the next verified revision shows the sample whole, granted.
    browser.get(f"{syd}/portal/")
    revision = int(
        browser.find_element(By.CSS_SELECTOR, ".mirror [data-revision]").get_attribute("data-revision") or 0
    )
    assert revision > first_revision
    granted = {r.find_elements(By.TAG_NAME, "td")[1].text: r for r in catalogue(browser)}[OWNED]
    assert granted.get_attribute("data-kind") == "record" and "Tildelt til" in granted.text
    shot(browser, artefacts, "08-granted-in-the-mirror")

    # She fetches the copy: her browser is sent to the hub's short-lived URL, and the file is
    # Crypt4GH for her department's key.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.get(request_url)
    checked(browser)
    assert standing(browser) == "granted"
    shot(browser, artefacts, "09-copy-offered")
    button(browser, "Hent").click()  # a download: the page stays
    copy = wait_for_download(downloads / f"{OWNED}.cram.c4gh")
    assert (
        crypt4gh_decrypt(copy.read_bytes(), world.department_secret, DEPARTMENT_PASSPHRASE) == world.plaintext
    )
    assert any(isinstance(e, WorkingCopyIssued) for e in world.sent)

    # The steward reads the audit trail (each step, by whom, for which case), then revokes.
    browser.get(f"{rh}/portal/audit")
    checked(browser)
    actions = [
        r.get_attribute("data-action") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-action]")
    ]
    assert {"discovery", "request", "decision", "delivery"} <= set(actions), actions
    assert CASE in browser.page_source
    shot(browser, artefacts, "10-audit")
    browser.get(f"{rh}/portal/requests/{request_id}")
    browser.find_element(By.ID, "revoke-reason").send_keys("Behandlingen er afsluttet")
    follow(browser, button(browser, "Tilbagekald adgangen"))
    assert standing(browser) == "revoked"
    assert any(isinstance(e, AccessRevoked) for e in world.sent)

    # The clinician's page no longer offers the copy, and her mirror takes the record back.
    browser.get(request_url)
    assert standing(browser) == "revoked"
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()='Hent']")
    browser.get(f"{syd}/portal/")
    assert {
        r.find_elements(By.TAG_NAME, "td")[1].text: r.get_attribute("data-kind") for r in catalogue(browser)
    }[OWNED] == "summary"
    shot(browser, artefacts, "11-revoked")

    # In English at the switch, and back.
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".lang a"))
    found = checked(browser, "en")
    assert found["h1"] == ["Overview"]
    shot(browser, artefacts, "12-english")
    follow(browser, browser.find_element(By.CSS_SELECTOR, ".lang a"))
    checked(browser, "da")


def catalogue(browser: webdriver.Chrome) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "tr[data-kind]")


def wait_for_download(path: Path, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not path.with_name(path.name + ".crdownload").exists() and path.stat().st_size:
            return path
        time.sleep(0.2)
    raise AssertionError(f"{path.name} was not downloaded: {sorted(p.name for p in path.parent.iterdir())}")
