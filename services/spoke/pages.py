"""The region's portal as people read it: server-rendered HTML, in Danish with an English switch.

Pure: each page is made from what the spoke shows and what the hub answered, so it can be
read and tested without a server. No script: every action is a link or a form, so the portal
works with JavaScript off, by keyboard (a skip link, labelled fields, native buttons) and with
a screen reader (one ``h1`` per page, headings in order, tables with captions and header
cells). Every value is escaped; a moment is written in Copenhagen's time with its zone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from shared.auth import Principal, Role
from shared.danish import analysis_name, local_moment, month_name, region_name
from shared.events import COPENHAGEN, GENOMIC_RANGE_FORM, Deliverable, Region, Urgency

if TYPE_CHECKING:
    from services.spoke.store import Shown

Language = Literal["da", "en"]
LANGUAGES: tuple[Language, ...] = ("da", "en")
BASE = "/portal"
ENGLISH_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

TEXT: dict[str, tuple[str, str]] = {
    "portal": ("Regionens portal", "The region's portal"),
    "skip": ("Spring til indhold", "Skip to content"),
    "nav": ("Hovedmenu", "Main menu"),
    "overview": ("Oversigt", "Overview"),
    "requests": ("Anmodninger", "Requests"),
    "audit": ("Revisionsspor", "Audit trail"),
    "signed_in": ("Logget ind som", "Signed in as"),
    "sign_out": ("Log ud", "Sign out"),
    "sign_in": ("Log ind", "Sign in"),
    "token": ("Adgangsnøgle (token)", "Access token"),
    "token_help": (
        "Din regions personlige token. Den gemmes kun i en cookie, som siden ikke kan læse.",
        "Your region's personal token. It is kept only in a cookie that page scripts cannot read.",
    ),
    "mirror": ("Spejlet af det nationale katalog", "Mirror of the national catalogue"),
    "revision": ("revision", "revision"),
    "shown_since": ("vist siden", "shown since"),
    "age": ("alder", "age"),
    "seconds": ("sekunder", "seconds"),
    "no_revision": (
        "Spejlet har endnu ingen verificeret revision: det indhenter hubbens katalog.",
        "The mirror has no verified revision yet: it is catching up with the hub's catalogue.",
    ),
    "lookup": ("Opslag om en patient", "Patient lookup"),
    "discovery": ("Findes der data om en patient?", "Does the national database hold data on a patient?"),
    "discovery_help": (
        "Spørgsmålet og svaret skrives i revisionssporet med din sagsreference.",
        "The question and its answer are written to the audit trail with your case reference.",
    ),
    "patient": ("Nationalt patientpseudonym", "National patient pseudonym"),
    "case_reference": ("Sagsreference", "Case reference"),
    "ask": ("Spørg", "Ask"),
    "answer": ("Svar", "Answer"),
    "exists_yes": ("Ja: data findes", "Yes: data exists"),
    "exists_no": ("Nej: ingen data om denne patient", "No: no data on this patient"),
    "region": ("Region", "Region"),
    "count": ("Antal prøver", "Samples"),
    "analyses": ("Analyser", "Analyses"),
    "first_received": ("Først modtaget", "First received"),
    "last_received": ("Sidst modtaget", "Last received"),
    "samples": ("Prøver", "Samples"),
    "request_copy": ("Anmod om arbejdskopi", "Request a working copy"),
    "catalogue": ("Katalog", "Catalogue"),
    "catalogue_help": (
        "Egne og tildelte prøver vises hele; andre regioners kun som opdagelse ser dem.",
        "Own and granted samples are shown whole; other regions' only as discovery sees them.",
    ),
    "kind": ("Visning", "Shown as"),
    "all": ("Alle", "All"),
    "records": ("Hele poster", "Whole records"),
    "summaries": ("Opsummeringer", "Summaries"),
    "filter": ("Vis", "Show"),
    "search": ("Søg (pseudonym, afdeling, platform)", "Search (pseudonym, department, platform)"),
    "next_page": ("Næste side", "Next page"),
    "sample": ("Prøve", "Sample"),
    "analysis": ("Analyse", "Analysis"),
    "status": ("Status", "Status"),
    "qc": ("Kvalitet", "QC"),
    "received": ("Modtaget", "Received"),
    "seen_as": ("Adgang", "Access"),
    "own": ("Egen", "Own"),
    "granted_until": ("Tildelt til", "Granted until"),
    "summary": ("Opsummering", "Summary"),
    "department": ("Afdeling", "Department"),
    "none_shown": ("Ingen prøver at vise.", "No samples to show."),
    "made_here": ("Anmodninger fra regionen", "Requests made by the region"),
    "for_decision": ("Anmodninger om regionens data", "Requests for the region's data"),
    "request": ("Anmodning", "Request"),
    "owner": ("Dataejer", "Data owner"),
    "requester": ("Anmoder", "Requester"),
    "wants": ("Ønsker", "Wants"),
    "urgency": ("Hast", "Urgency"),
    "standing": ("Stade", "Standing"),
    "requested_at": ("Anmodet", "Requested"),
    "no_requests": ("Ingen anmodninger.", "No requests."),
    "new_request": ("Ny anmodning om arbejdskopi", "New request for a working copy"),
    "samples_help": (
        "Prøvepseudonymer adskilt af komma, eller udfyld patientpseudonymet i stedet.",
        "Sample pseudonyms separated by commas, or fill in the patient pseudonym instead.",
    ),
    "ranges": ("Genomiske områder (valgfrit)", "Genomic ranges (optional)"),
    "ranges_help": (f"Ét pr. linje: {GENOMIC_RANGE_FORM}", f"One per line: {GENOMIC_RANGE_FORM}"),
    "purpose": ("Formål", "Purpose"),
    "treatment": ("Patientbehandling", "Patient treatment"),
    "send_request": ("Send anmodning", "Send request"),
    "decision": ("Afgørelse", "Decision"),
    "decide": ("Afgør anmodningen", "Decide on the request"),
    "reason": ("Begrundelse", "Reason"),
    "reason_help": ("Skal udfyldes ved afslag.", "Required for a denial."),
    "grant": ("Giv adgang", "Grant"),
    "deny": ("Afslå", "Deny"),
    "revoke": ("Tilbagekald adgangen", "Revoke the grant"),
    "revocation": ("Tilbagekaldelse", "Revocation"),
    "decided": ("Afgjort", "Decided"),
    "valid_until": ("Gælder til", "Valid until"),
    "revoked": ("Tilbagekaldt", "Revoked"),
    "copies": ("Arbejdskopier", "Working copies"),
    "copies_help": (
        "Filerne er krypteret (Crypt4GH) til afdelingens nøgle; åbn dem med `crypt4gh decrypt`.",
        "The files are encrypted (Crypt4GH) to the department's key; open them with `crypt4gh decrypt`.",
    ),
    "file": ("Fil", "File"),
    "size": ("Størrelse (bytes)", "Size (bytes)"),
    "sha256": ("SHA-256", "SHA-256"),
    "fetch": ("Hent", "Fetch"),
    "no_copies": (
        "Ingen filer kan hentes under denne anmodning nu.",
        "No file can be fetched under this request now.",
    ),
    "on_tape": ("Filen hentes fra bånd; prøv igen om", "The file is being recalled from tape; try again in"),
    "entries": ("Poster", "Entries"),
    "seq": ("Nr.", "No."),
    "at": ("Tidspunkt", "Time"),
    "actor": ("Aktør", "Actor"),
    "action": ("Handling", "Action"),
    "concerns": ("Vedrører", "Concerns"),
    "detail": ("Indhold", "Detail"),
    "no_entries": ("Ingen poster.", "No entries."),
    "refused": ("Afvist", "Refused"),
    "hub_away": (
        "Hubbens adgangstjeneste svarer ikke lige nu; prøv igen om lidt.",
        "The hub's access service is not answering just now; try again shortly.",
    ),
    "no_hub": (
        "Denne spoke er ikke forbundet til hubbens adgangstjeneste.",
        "This spoke is not connected to the hub's access service.",
    ),
    "back": ("Tilbage", "Back"),
    "language": ("English", "Dansk"),
}

STANDINGS: dict[str, tuple[str, str]] = {
    "pending": ("Afventer afgørelse", "Awaiting decision"),
    "granted": ("Adgang givet", "Granted"),
    "denied": ("Afslået", "Denied"),
    "revoked": ("Tilbagekaldt", "Revoked"),
    "expired": ("Udløbet", "Expired"),
}
DELIVERABLES: dict[Deliverable, tuple[str, str]] = {
    Deliverable.HARMONISED_CRAM: ("Harmoniseret CRAM", "Harmonised CRAM"),
    Deliverable.HARMONISED_VCF: ("Harmoniseret VCF", "Harmonised VCF"),
    Deliverable.CLINICAL_OUTPUT: ("Klinisk output", "Clinical output"),
    Deliverable.RAW_READS: ("Rå læsninger", "Raw reads"),
}
URGENCIES: dict[Urgency, tuple[str, str]] = {
    Urgency.ROUTINE: ("Rutine", "Routine"),
    Urgency.URGENT: ("Haster", "Urgent"),
    Urgency.EMERGENCY: ("Akut", "Emergency"),
}
ROLES: dict[Role, tuple[str, str]] = {
    Role.UPLOADER: ("indberetter", "uploader"),
    Role.CLINICIAN: ("kliniker", "clinician"),
    Role.DATA_STEWARD: ("dataansvarlig", "data steward"),
    Role.FINANCE: ("økonomi", "finance"),
    Role.OPERATOR: ("drift", "operator"),
}

_STYLE = (
    "body{font-family:sans-serif;margin:0 auto;max-width:70em;padding:0 1em 2em;color:#1d1d1d;line-height:1.4}"
    ".skip{position:absolute;left:-999px}.skip:focus{left:1em;top:1em;background:#fff;padding:.3em}"
    "header{border-bottom:2px solid #1a4d7a;padding:.6em 0;display:flex;flex-wrap:wrap;gap:.4em 1.4em;"
    "align-items:center}header nav a{margin-right:1em}.brand{font-weight:bold;margin:0}"
    "header form{display:inline;margin:0}.who,.lang{margin:0}"
    "a{color:#0b4f8a}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f2a900}"
    ".mirror{background:#eef3f8;padding:.4em .7em;border-left:4px solid #1a4d7a}"
    ".error{background:#fdecea;border-left:4px solid #b3261e;padding:.4em .7em}"
    ".notice{background:#edf7ed;border-left:4px solid #2e7d32;padding:.4em .7em}"
    "table{border-collapse:collapse;margin:.8em 0;width:100%}caption{text-align:left;font-weight:bold;padding:.3em 0}"
    "th,td{border:1px solid #c8c8c8;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f0f0}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}code{word-break:break-all}"
    "form.stack label{display:block;margin-top:.7em;font-weight:bold}"
    "form.stack .help{display:block;font-weight:normal;color:#555;font-size:.9em}"
    "input[type=text],input[type=password],input[type=search],textarea,select"
    "{font:inherit;padding:.3em;max-width:100%}"
    "input[type=text],input[type=password],textarea{width:32em}"
    "button{font:inherit;padding:.35em .9em;margin-top:.7em;cursor:pointer}fieldset{margin-top:.7em}"
    "form.inline{display:flex;flex-wrap:wrap;gap:.6em 1em;align-items:flex-end}"
    "form.inline label{display:flex;flex-direction:column;font-weight:bold}"
)


def text(key: str, lang: Language) -> str:
    da, en = TEXT[key]
    return da if lang == "da" else en


def t(key: str, lang: Language) -> str:
    """A text, escaped for HTML."""
    return escape(text(key, lang))


def _pick(pair: tuple[str, str], lang: Language) -> str:
    return escape(pair[0] if lang == "da" else pair[1])


def moment(when: datetime | str | None, lang: Language) -> str:
    """An instant in Copenhagen's time with its zone, in the page's language."""
    if when is None:
        return ""
    at = datetime.fromisoformat(when) if isinstance(when, str) else when
    if lang == "da":
        return escape(local_moment(at))
    local = at.astimezone(COPENHAGEN)
    return escape(
        f"{local.day} {ENGLISH_MONTHS[local.month - 1]} {local.year}, {local:%H:%M} ({local.tzname()})"
    )


def month(value: str, lang: Language) -> str:
    return escape(month_name(value) if lang == "da" else value)


def region(value: str | Region) -> str:
    return escape(region_name(value))


def csrf_token(token: str) -> str:
    """The hidden field every form posts back: derived from the signed-in person's token, so
    a page on another site, which cannot read it, cannot make a form the portal accepts."""
    return hmac.new(token.encode(), b"genomhub portal form v1", hashlib.sha256).hexdigest()


def csrf_holds(token: str, sent: str) -> bool:
    return hmac.compare_digest(csrf_token(token), sent)


@dataclass(frozen=True)
class Viewer:
    """Who reads the page, in which language, and the spoke they read it on."""

    principal: Principal
    token: str
    lang: Language
    spoke: Region

    def may(self, role: Role) -> bool:
        return self.principal.has(role)

    @property
    def csrf(self) -> str:
        return f"<input type=hidden name=csrf value='{csrf_token(self.token)}'>"


@dataclass(frozen=True)
class MirrorState:
    """The revision the spoke shows (None: none verified yet) and how old it is."""

    revision: int | None
    applied_at: datetime | None
    now: datetime

    @classmethod
    def of(cls, shown: Shown | None, now: datetime) -> MirrorState:
        """From the store's shown revision (None: none yet)."""
        return cls(shown.revision if shown else None, shown.applied_at if shown else None, now)


def page(
    title: str,
    body: Sequence[str],
    *,
    lang: Language,
    spoke: Region,
    here: str,
    viewer: Viewer | None = None,
    mirror: MirrorState | None = None,
) -> str:
    """A whole page: the header with the menu, who is signed in and the language switch,
    the mirror's revision, then ``body``."""
    other: Language = "en" if lang == "da" else "da"
    switch = f"{BASE}/language?" + urlencode({"to": other, "back": here})
    header = [
        f"<header><p class=brand>genomhub · {t('portal', lang)} · {region(spoke)}</p>",
    ]
    if viewer is not None:
        roles = ", ".join(_pick(ROLES[r], lang) for r in sorted(viewer.principal.roles))
        header.append(
            f"<nav aria-label='{t('nav', lang)}'><a href='{BASE}/'>{t('overview', lang)}</a>"
            f"<a href='{BASE}/requests'>{t('requests', lang)}</a>"
            + (f"<a href='{BASE}/audit'>{t('audit', lang)}</a>" if viewer.may(Role.DATA_STEWARD) else "")
            + "</nav>"
        )
        header.append(
            f"<p class=who>{t('signed_in', lang)}: {region(viewer.principal.name)} ({roles}) "
            f"<form method=post action='{BASE}/logout'>{viewer.csrf}"
            f"<button type=submit>{t('sign_out', lang)}</button></form></p>"
        )
    header.append(
        f"<p class=lang><a href='{escape(switch)}' lang={other} hreflang={other}>{t('language', lang)}</a></p>"
    )
    header.append("</header>")
    parts = [
        f"<!DOCTYPE html><html lang={lang}><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · genomhub</title><style>{_STYLE}</style></head><body>",
        f"<a class=skip href=#main>{t('skip', lang)}</a>",
        *header,
        "<main id=main>",
        f"<h1>{escape(title)}</h1>",
    ]
    if mirror is not None:
        parts.append(mirror_line(mirror, lang))
    parts += body
    parts.append("</main></body></html>\n")
    return "".join(parts)


def mirror_line(mirror: MirrorState, lang: Language) -> str:
    if mirror.revision is None or mirror.applied_at is None:
        return f"<p class=mirror role=status>{t('no_revision', lang)}</p>"
    age = max(0, round((mirror.now - mirror.applied_at).total_seconds()))
    return (
        f"<p class=mirror role=status>{t('mirror', lang)}: {t('revision', lang)} "
        f"<strong data-revision={mirror.revision}>{mirror.revision}</strong>, {t('shown_since', lang)} "
        f"{moment(mirror.applied_at, lang)} ({t('age', lang)} {age} {t('seconds', lang)})</p>"
    )


def error(message: str, lang: Language) -> str:
    return f"<p class=error role=alert><strong>{t('refused', lang)}:</strong> {escape(message)}</p>"


def notice(message: str) -> str:
    return f"<p class=notice role=status>{escape(message)}</p>"


# -- signing in ---------------------------------------------------------------------------------


def login_body(lang: Language, problem: str | None = None) -> list[str]:
    return [
        *([error(problem, lang)] if problem else []),
        f"<form class=stack method=post action='{BASE}/login'>"
        f"<label for=token>{t('token', lang)}<span class=help id=token-help>{t('token_help', lang)}</span></label>"
        "<input type=password id=token name=token required autocomplete=current-password "
        "aria-describedby=token-help>"
        f"<div><button type=submit>{t('sign_in', lang)}</button></div></form>",
    ]


# -- the overview: discovery and the mirrored catalogue ------------------------------------------


def discovery_form(viewer: Viewer, patient: str = "", case_reference: str = "") -> str:
    lang = viewer.lang
    return (
        f"<section aria-labelledby=discovery><h2 id=discovery>{t('discovery', lang)}</h2>"
        f"<p>{t('discovery_help', lang)}</p>"
        f"<form class=inline method=get action='{BASE}/discovery'>"
        f"<label for=patient>{t('patient', lang)}<input type=text id=patient name=patient required "
        f"value='{escape(patient)}'></label>"
        f"<label for=case_reference>{t('case_reference', lang)}<input type=text id=case_reference "
        f"name=case_reference required value='{escape(case_reference)}'></label>"
        f"<button type=submit>{t('ask', lang)}</button></form></section>"
    )


def discovery_answer(viewer: Viewer, answer: Mapping[str, Any], patient: str, case_reference: str) -> str:
    lang = viewer.lang
    if not answer.get("exists"):
        return f"<section aria-labelledby=answer><h2 id=answer>{t('answer', lang)}</h2><p data-exists=no>{t('exists_no', lang)}</p></section>"
    rows = []
    for held in answer.get("regions", []):
        owner = str(held["region"])
        ask = ""
        if viewer.may(Role.CLINICIAN) and owner != viewer.spoke.value:
            query = urlencode({"owner": owner, "patient": patient, "case_reference": case_reference})
            ask = f"<a href='{BASE}/requests/new?{escape(query)}'>{t('request_copy', lang)}</a>"
        samples = ", ".join(escape(s) for s in held.get("samples") or [])
        rows.append(
            f"<tr data-region={escape(owner)}><th scope=row>{region(owner)}</th><td class=n>{int(held['count'])}</td>"
            f"<td>{', '.join(escape(analysis_name(a)) for a in held.get('analysis_types', []))}</td>"
            f"<td>{month(held['first_received'], lang)}</td><td>{month(held['last_received'], lang)}</td>"
            f"<td>{samples}</td><td>{ask}</td></tr>"
        )
    return (
        f"<section aria-labelledby=answer><h2 id=answer>{t('answer', lang)}</h2>"
        f"<p data-exists=yes><strong>{t('exists_yes', lang)}</strong> ({int(answer.get('count', 0))} "
        f"{t('samples', lang).lower()})</p>"
        f"<table><caption>{t('answer', lang)}</caption><thead><tr><th scope=col>{t('region', lang)}</th>"
        f"<th scope=col>{t('count', lang)}</th><th scope=col>{t('analyses', lang)}</th>"
        f"<th scope=col>{t('first_received', lang)}</th><th scope=col>{t('last_received', lang)}</th>"
        f"<th scope=col>{t('samples', lang)}</th><th scope=col><span class=skip>{t('request_copy', lang)}</span></th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def catalogue(
    viewer: Viewer, samples: Iterable[Any], given: Mapping[str, str], following: Mapping[str, str] | None
) -> str:
    """A page of the mirrored catalogue: ``samples`` are the store's entries (records and
    summaries) that the filters ``given`` find; ``following``, the query of the next page."""
    lang = viewer.lang
    kind, owner, q = given.get("kind"), given.get("region"), given.get("q", "")
    kinds = [("", "all"), ("record", "records"), ("summary", "summaries")]
    kind_options = "".join(
        f"<option value='{v}'{' selected' if (kind or '') == v else ''}>{t(k, lang)}</option>"
        for v, k in kinds
    )
    region_options = f"<option value=''>{t('all', lang)}</option>" + "".join(
        f"<option value='{r.value}'{' selected' if owner == r.value else ''}>{region(r)}</option>"
        for r in Region
    )
    rows = []
    for sample in samples:
        record = sample.kind == "record"
        if record:
            access = (
                t("own", lang)
                if sample.seen_as == "own"
                else f"{t('granted_until', lang)} {moment(sample.granted_until, lang)}"
            )
        else:
            access = t("summary", lang)
        ask = ""
        if viewer.may(Role.CLINICIAN) and sample.region != viewer.spoke:
            query = urlencode({"owner": sample.region.value, "samples": sample.sample_id})
            ask = f"<a href='{BASE}/requests/new?{escape(query)}'>{t('request_copy', lang)}</a>"
        rows.append(
            f"<tr data-kind={sample.kind}><td>{region(sample.region)}</td><td><code>{escape(sample.sample_id)}</code></td>"
            f"<td>{escape(analysis_name(sample.analysis_type))}</td><td>{escape(str(sample.status))}</td>"
            f"<td>{escape(str(sample.qc))}</td><td>{month(sample.received_month, lang)}</td>"
            f"<td>{escape(sample.department) if record else ''}</td><td>{access}</td><td>{ask}</td></tr>"
        )
    table = (
        f"<table><caption>{t('catalogue', lang)}</caption><thead><tr><th scope=col>{t('region', lang)}</th>"
        f"<th scope=col>{t('sample', lang)}</th><th scope=col>{t('analysis', lang)}</th>"
        f"<th scope=col>{t('status', lang)}</th><th scope=col>{t('qc', lang)}</th>"
        f"<th scope=col>{t('received', lang)}</th><th scope=col>{t('department', lang)}</th>"
        f"<th scope=col>{t('seen_as', lang)}</th><th scope=col><span class=skip>{t('request_copy', lang)}</span></th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else f"<p>{t('none_shown', lang)}</p>"
    )
    more = (
        f"<p><a rel=next href='{BASE}/?{escape(urlencode(following))}'>{t('next_page', lang)}</a></p>"
        if following
        else ""
    )
    return (
        f"<section aria-labelledby=catalogue><h2 id=catalogue>{t('catalogue', lang)}</h2>"
        f"<p>{t('catalogue_help', lang)}</p>"
        f"<form class=inline method=get action='{BASE}/'>"
        f"<label for=kind>{t('kind', lang)}<select id=kind name=kind>{kind_options}</select></label>"
        f"<label for=region>{t('region', lang)}<select id=region name=region>{region_options}</select></label>"
        f"<label for=q>{t('search', lang)}<input id=q name=q type=search minlength=2 maxlength=100 "
        f"value='{escape(q)}'></label>"
        f"<button type=submit>{t('filter', lang)}</button></form>{table}{more}</section>"
    )


# -- requests ------------------------------------------------------------------------------------


def _standing(value: str, lang: Language) -> str:
    return f"<span data-standing={escape(value)}>{_pick(STANDINGS.get(value, (value, value)), lang)}</span>"


def _wants(values: Iterable[str], lang: Language) -> str:
    return ", ".join(_pick(DELIVERABLES[Deliverable(w)], lang) for w in values)


def requests_table(viewer: Viewer, views: Sequence[Mapping[str, Any]], caption: str) -> str:
    lang = viewer.lang
    if not views:
        return f"<h2>{escape(caption)}</h2><p>{t('no_requests', lang)}</p>"
    rows = []
    for view in views:
        asked = view["request"]
        rid = str(asked["request_id"])
        rows.append(
            f"<tr data-request={escape(rid)}><td><a href='{BASE}/requests/{escape(rid)}'><code>{escape(rid[:12])}</code></a></td>"
            f"<td>{region(asked['owner'])}</td>"
            f"<td>{region(asked['requester']['region'])}, {escape(asked['requester']['department'])}</td>"
            f"<td>{', '.join(escape(s['sample_id']) for s in asked['samples'])}</td>"
            f"<td>{_wants(asked['wants'], lang)}</td><td>{_pick(URGENCIES[Urgency(asked['urgency'])], lang)}</td>"
            f"<td>{_standing(view['standing'], lang)}</td><td>{moment(asked['requested_at'], lang)}</td></tr>"
        )
    return (
        f"<h2>{escape(caption)}</h2><table><caption>{escape(caption)}</caption><thead><tr>"
        f"<th scope=col>{t('request', lang)}</th><th scope=col>{t('owner', lang)}</th>"
        f"<th scope=col>{t('requester', lang)}</th><th scope=col>{t('samples', lang)}</th>"
        f"<th scope=col>{t('wants', lang)}</th><th scope=col>{t('urgency', lang)}</th>"
        f"<th scope=col>{t('standing', lang)}</th><th scope=col>{t('requested_at', lang)}</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def requests_body(viewer: Viewer, views: Sequence[Mapping[str, Any]]) -> list[str]:
    lang, me = viewer.lang, viewer.spoke.value
    made = [v for v in views if v["request"]["requester"]["region"] == me]
    owned = [v for v in views if v["request"]["owner"] == me]
    parts = []
    if viewer.may(Role.CLINICIAN):
        parts.append(f"<p><a href='{BASE}/requests/new'>{t('new_request', lang)}</a></p>")
    parts.append(requests_table(viewer, made, text("made_here", lang)))
    parts.append(requests_table(viewer, owned, text("for_decision", lang)))
    return parts


def request_form(viewer: Viewer, filled: Mapping[str, str | list[str]]) -> str:
    lang = viewer.lang

    def value(name: str) -> str:
        got = filled.get(name, "")
        return escape(got if isinstance(got, str) else ", ".join(got))

    owners = "".join(
        f"<option value='{r.value}'{' selected' if value('owner') == r.value else ''}>{region(r)}</option>"
        for r in Region
        if r != viewer.spoke
    )
    chosen = filled.get("wants") or [Deliverable.HARMONISED_CRAM.value, Deliverable.HARMONISED_VCF.value]
    wants = "".join(
        f"<label><input type=checkbox name=wants value='{d.value}'{' checked' if d.value in chosen else ''}> "
        f"{_pick(DELIVERABLES[d], lang)}</label>"
        for d in Deliverable
    )
    urgency = "".join(
        f"<option value='{u.value}'{' selected' if value('urgency') == u.value else ''}>{_pick(URGENCIES[u], lang)}</option>"
        for u in Urgency
    )
    return (
        f"<form class=stack method=post action='{BASE}/requests'>{viewer.csrf}"
        f"<label for=owner>{t('owner', lang)}</label><select id=owner name=owner required>{owners}</select>"
        f"<label for=patient>{t('patient', lang)}</label><input type=text id=patient name=patient value='{value('patient')}'>"
        f"<label for=samples>{t('samples', lang)}<span class=help id=samples-help>{t('samples_help', lang)}</span></label>"
        f"<input type=text id=samples name=samples aria-describedby=samples-help value='{value('samples')}'>"
        f"<label for=department>{t('department', lang)}</label>"
        f"<input type=text id=department name=department required value='{value('department')}'>"
        f"<fieldset><legend>{t('wants', lang)}</legend>{wants}</fieldset>"
        f"<label for=ranges>{t('ranges', lang)}<span class=help id=ranges-help>{t('ranges_help', lang)}</span></label>"
        f"<textarea id=ranges name=ranges rows=3 aria-describedby=ranges-help>{value('ranges')}</textarea>"
        f"<p><strong>{t('purpose', lang)}:</strong> {t('treatment', lang)}</p>"
        "<input type=hidden name=purpose value=patient-treatment>"
        f"<label for=case_reference>{t('case_reference', lang)}</label>"
        f"<input type=text id=case_reference name=case_reference required value='{value('case_reference')}'>"
        f"<label for=urgency>{t('urgency', lang)}</label><select id=urgency name=urgency>{urgency}</select>"
        f"<div><button type=submit>{t('send_request', lang)}</button></div></form>"
    )


def request_detail(
    viewer: Viewer,
    view: Mapping[str, Any],
    objects: Sequence[Mapping[str, Any]] | None,
    problem: str | None = None,
    said: str | None = None,
) -> list[str]:
    lang = viewer.lang
    asked = view["request"]
    rid = str(asked["request_id"])
    owner = str(asked["owner"])
    ranges = ", ".join(
        escape(r["reference_name"] + (f":{r['start']}-{r['end']}" if r.get("start") is not None else ""))
        for r in asked.get("genomic_ranges") or []
    )
    facts = [
        (t("request", lang), f"<code>{escape(rid)}</code>"),
        (t("standing", lang), _standing(view["standing"], lang)),
        (t("owner", lang), region(owner)),
        (
            t("requester", lang),
            f"{region(asked['requester']['region'])}, {escape(asked['requester']['department'])}",
        ),
        (t("samples", lang), ", ".join(escape(s["sample_id"]) for s in asked["samples"])),
        (t("wants", lang), _wants(asked["wants"], lang)),
        (t("ranges", lang), ranges or "–"),
        (t("purpose", lang), t("treatment", lang)),
        (t("case_reference", lang), escape(asked["case_reference"])),
        (t("urgency", lang), _pick(URGENCIES[Urgency(asked["urgency"])], lang)),
        (t("requested_at", lang), moment(asked["requested_at"], lang)),
    ]
    decision = view.get("decision")
    if decision:
        facts.append((t("decided", lang), moment(decision["decided_at"], lang)))
        if decision.get("valid_until"):
            facts.append((t("valid_until", lang), moment(decision["valid_until"], lang)))
        if decision.get("reason"):
            facts.append((t("reason", lang), escape(decision["reason"])))
    revocation = view.get("revocation")
    if revocation:
        facts.append(
            (t("revoked", lang), f"{moment(revocation['revoked_at'], lang)}: {escape(revocation['reason'])}")
        )
    parts = [*([error(problem, lang)] if problem else []), *([notice(said)] if said else [])]
    parts.append(
        f"<table class=facts><caption>{t('request', lang)}</caption><tbody>"
        + "".join(f"<tr><th scope=row>{k}</th><td>{v}</td></tr>" for k, v in facts)
        + "</tbody></table>"
    )
    steward_of_owner = viewer.may(Role.DATA_STEWARD) and viewer.spoke.value == owner
    if steward_of_owner and view["standing"] == "pending":
        parts.append(
            f"<section aria-labelledby=decide><h2 id=decide>{t('decide', lang)}</h2>"
            f"<form class=stack method=post action='{BASE}/requests/{escape(rid)}/decision'>{viewer.csrf}"
            f"<label for=reason>{t('reason', lang)}<span class=help id=reason-help>{t('reason_help', lang)}</span></label>"
            "<textarea id=reason name=reason rows=3 aria-describedby=reason-help></textarea>"
            f"<div><button type=submit name=grant value=yes>{t('grant', lang)}</button> "
            f"<button type=submit name=grant value=no>{t('deny', lang)}</button></div></form></section>"
        )
    if steward_of_owner and view["standing"] == "granted":
        parts.append(
            f"<section aria-labelledby=revoke><h2 id=revoke>{t('revoke', lang)}</h2>"
            f"<form class=stack method=post action='{BASE}/requests/{escape(rid)}/revocation'>{viewer.csrf}"
            f"<label for=revoke-reason>{t('reason', lang)}</label>"
            "<textarea id=revoke-reason name=reason rows=2 required></textarea>"
            f"<div><button type=submit>{t('revoke', lang)}</button></div></form></section>"
        )
    if objects is not None:
        parts.append(copies_section(viewer, rid, objects))
    parts.append(f"<p><a href='{BASE}/requests'>{t('back', lang)}</a></p>")
    return parts


def copies_section(viewer: Viewer, request_id: str, objects: Sequence[Mapping[str, Any]]) -> str:
    lang = viewer.lang
    rows = []
    for found in objects:
        methods = [m for m in found.get("access_methods") or [] if m.get("access_id")]
        sha = next((c["checksum"] for c in found.get("checksums", []) if c.get("type") == "sha-256"), "")
        fetch = ""
        if methods:
            fetch = (
                f"<form method=post action='{BASE}/requests/{escape(request_id)}/fetch'>{viewer.csrf}"
                f"<input type=hidden name=object_id value='{escape(found['id'])}'>"
                f"<input type=hidden name=access_id value='{escape(methods[0]['access_id'])}'>"
                f"<button type=submit aria-label='{t('fetch', lang)} {escape(found['name'])}'>{t('fetch', lang)}</button></form>"
            )
        rows.append(
            f"<tr data-object={escape(found['id'])}><td>{escape(found['name'])}</td><td class=n>{int(found['size'])}</td>"
            f"<td><code>{escape(sha)}</code></td><td>{fetch}</td></tr>"
        )
    if not any(o.get("access_methods") for o in objects):
        return f"<section aria-labelledby=copies><h2 id=copies>{t('copies', lang)}</h2><p>{t('no_copies', lang)}</p></section>"
    return (
        f"<section aria-labelledby=copies><h2 id=copies>{t('copies', lang)}</h2><p>{t('copies_help', lang)}</p>"
        f"<table><caption>{t('copies', lang)}</caption><thead><tr><th scope=col>{t('file', lang)}</th>"
        f"<th scope=col>{t('size', lang)}</th><th scope=col>{t('sha256', lang)}</th>"
        f"<th scope=col><span class=skip>{t('fetch', lang)}</span></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def on_tape(retry_after: str | None, lang: Language) -> str:
    """What a reader is told of a copy whose file is being recalled from tape (plain text)."""
    return f"{text('on_tape', lang)} {retry_after or '?'} {text('seconds', lang)}."


# -- the audit slice -----------------------------------------------------------------------------


def audit_body(viewer: Viewer, entries: Sequence[Mapping[str, Any]]) -> list[str]:
    lang = viewer.lang
    if not entries:
        return [f"<p>{t('no_entries', lang)}</p>"]
    rows = []
    for entry in entries:
        detail = "; ".join(
            f"{escape(str(k))}: {escape(_short(v))}" for k, v in sorted(entry["detail"].items())
        )
        rid = entry.get("request_id") or ""
        rows.append(
            f"<tr data-action={escape(entry['action'])}><td class=n>{int(entry['seq'])}</td>"
            f"<td>{moment(entry['at'], lang)}</td><td>{escape(entry['actor'])}</td><td>{escape(entry['action'])}</td>"
            f"<td>{f'<a href={BASE}/requests/{escape(rid)}><code>{escape(rid[:12])}</code></a>' if rid else ''}</td>"
            f"<td>{escape(entry['case_reference'])}</td><td>{', '.join(escape(c) for c in entry['concerns'])}</td>"
            f"<td>{detail}</td></tr>"
        )
    return [
        f"<table><caption>{t('entries', lang)}</caption><thead><tr><th scope=col>{t('seq', lang)}</th>"
        f"<th scope=col>{t('at', lang)}</th><th scope=col>{t('actor', lang)}</th><th scope=col>{t('action', lang)}</th>"
        f"<th scope=col>{t('request', lang)}</th><th scope=col>{t('case_reference', lang)}</th>"
        f"<th scope=col>{t('concerns', lang)}</th><th scope=col>{t('detail', lang)}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    ]


def _short(value: Any) -> str:
    said = (
        value
        if isinstance(value, str)
        else ", ".join(map(str, value))
        if isinstance(value, list)
        else str(value)
    )
    return said if len(said) <= 120 else said[:117] + "..."
