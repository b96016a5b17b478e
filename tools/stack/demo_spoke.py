"""The demo's spoke: Syddanmark's mirror of the national catalogue beside the hub, its
revision following the hub's feed (design.md section 11), and the region's portal on it."""

from __future__ import annotations

import html
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

from tools.stack.supervisor import LocalSpoke, LocalStack


def get_json(port: int, path: str, token: str) -> tuple[int, Any]:
    """A local API's answer to ``token``: the status and the JSON body (None when there is none)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:  # not listening yet
        return 0, None


def show_spoke(
    stack: LocalStack, spoke: LocalSpoke, region_token: str, national_token: str, say: Callable[[str], None]
) -> None:
    """What the spoke shows once it has caught up with the hub's last revision, and the hub's
    view of how far behind it is."""
    say(f"\n{spoke.region.value}'s spoke: its own broker, MirrorMaker 2 from the hub, a verified revision")
    publisher = stack.port_of("publisher")
    deadline = time.monotonic() + 60
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = get_json(publisher, "/v1/spokes", national_token)
        if status == 200:
            (row,) = [r for r in body["spokes"] if r["region"] == spoke.region.value]
            if row["shown_revision"] is not None and row["shown_revision"] == row["published_revision"]:
                break
        time.sleep(0.5)
    kinds: Counter[tuple[bool, str]] = Counter()
    cursor = ""
    while True:  # every page, as a client of the catalogue's API reads it
        status, shown = get_json(spoke.port, f"/v1/samples?limit=500{cursor}", region_token)
        if status != 200:
            say(f"  the spoke answers {status}: {shown}")
            return
        kinds.update((s["region"] == spoke.region.value, s["kind"]) for s in shown["samples"])
        if shown["next_cursor"] is None:
            break
        cursor = f"&cursor={shown['next_cursor']}"
    revision = shown["revision"]
    say(
        f"  revision {revision['revision']} (up to entry {revision['upto']}, state hash "
        f"{revision['state_hash'][:16]}..., switched at {revision['applied_at']})"
    )
    say(
        f"  {kinds[(True, 'record')]} of its own samples whole, {kinds[(False, 'record')]} granted, "
        f"{kinds[(False, 'summary')]} other regions' as discovery sees them"
    )
    say(
        f"  the hub: revision {row.get('published_revision')} published, {row.get('shown_revision')} shown there, "
        f"{row.get('entries_behind')} entries behind"
    )


def show_portal(
    spoke: LocalSpoke, clinician_token: str, patient: str, case: str, say: Callable[[str], None]
) -> None:
    """The clinician of the data-out story on her region's portal, as her browser reads it:
    signed in with her token, the mirror's revision, the discovery of the patient answered by
    the hub through the spoke, and her request with where it stands now."""
    base = f"http://127.0.0.1:{spoke.port}/portal"
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def page(path: str, form: dict[str, str] | None = None) -> str:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with browser.open(f"{base}{path}", data=data, timeout=30) as response:
            return str(response.read().decode())

    say(f"\n{spoke.region.value}'s portal at {base}/ (sign in with a {spoke.region.value} token)")
    overview = page("/login", {"token": clinician_token})
    revision = re.search(r"data-revision=(\d+)", overview)
    rows = len(re.findall(r"<tr data-kind=", overview))
    say(
        f"  signed in as the clinician: the mirror at revision {revision.group(1) if revision else '?'}, {rows} samples listed"
    )
    query = urllib.parse.urlencode({"patient": patient, "case_reference": case})
    answer = page(f"/discovery?{query}")
    held = re.findall(r"<tr data-region=(\w+)><th scope=row>([^<]+)</th><td class=n>(\d+)</td>", answer)
    said = ", ".join(f"{html.unescape(name)} holds {count}" for _, name, count in held) or "nothing found"
    say(f"  the portal's discovery of {patient} (the hub answers and logs it): {said}")
    mine = page("/requests")
    standings = re.findall(r"data-standing=(\w+)>([^<]+)<", mine)
    say(
        "  her requests on the portal: "
        + (", ".join(f"{html.unescape(danish)} ({code})" for code, danish in standings) or "none")
    )
