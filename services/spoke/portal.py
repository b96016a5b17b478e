"""The region's portal, served by its spoke: where a clinician searches the national overview,
requests a working copy and fetches it, and where the region's data steward decides.

What the spoke holds (its verified revision of the catalogue) it answers itself; everything
the access story needs (discovery, requests, decisions, the audit slice, a copy's URL) is the
hub's access service's, asked with the signed-in person's own token (:mod:`services.spoke.hub`),
so the hub checks and logs each step exactly as for the command line and the portal keeps no
state of its own: any replica serves any page.

Signing in takes one of the region's tokens and keeps it in an ``HttpOnly``, ``SameSite=Strict``
cookie (``Secure`` unless the portal is read on loopback), checked against the configured
token hashes on every request, as the API's bearer check does. Every form carries a field
derived from the token (:func:`~services.spoke.pages.csrf_token`). Another region's token, or
NGC's, is refused: a region reads its own spoke, NGC the hub.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.spoke import pages
from services.spoke.hub import HubAccess, HubAnswer, HubUnreachable
from services.spoke.pages import BASE, Language, MirrorState, Viewer, text
from services.spoke.search import SampleQuery
from services.spoke.store import SpokeStore
from shared.api import InvalidParameters, parse_parameters
from shared.auth import Principal, Role, Tokens, Unauthorized
from shared.events import Deliverable, Region, genomic_range_fields
from shared.http import LOOPBACK
from shared.telemetry import get_logger

log = get_logger(__name__)

SESSION_COOKIE = "genomhub_portal"
LANGUAGE_COOKIE = "genomhub_portal_language"
SESSION_SECONDS = 8 * 3600
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")

PATHS = (
    BASE,
    f"{BASE}/",
    f"{BASE}/login",
    f"{BASE}/logout",
    f"{BASE}/language",
    f"{BASE}/discovery",
    f"{BASE}/requests",
    f"{BASE}/requests/new",
    f"{BASE}/requests/{{request_id}}",
    f"{BASE}/requests/{{request_id}}/decision",
    f"{BASE}/requests/{{request_id}}/revocation",
    f"{BASE}/requests/{{request_id}}/fetch",
    f"{BASE}/audit",
)
"""The portal's routes: past the API's bearer check, since the portal checks its own cookie."""

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SignIn(Exception):
    """No valid session: the reader is sent to sign in."""


class Refused(Exception):
    """A page that says no (its status and words), raised from deep in a handler."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


class Portal:
    def __init__(
        self,
        store: SpokeStore,
        region: Region,
        tokens: Tokens,
        hub: HubAccess | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.region = region
        self.tokens = tokens
        self.hub = hub
        self.clock = clock
        hub_origin = ""
        if hub is not None:
            parts = urlsplit(hub.url)
            hub_origin = f" {parts.scheme}://{parts.netloc}"
        # form-action is enforced on a form's redirect too: the fetch form ends at the hub.
        self.policy = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
            f"form-action 'self'{hub_origin}; frame-ancestors 'none'; base-uri 'none'"
        )

    def install(self, app: web.Application) -> None:
        router = app.router
        router.add_get(BASE, self._to_overview)
        router.add_get(f"{BASE}/login", self._page(self.login_page, signed_in=False))
        router.add_post(f"{BASE}/login", self._page(self.login, signed_in=False))
        router.add_post(f"{BASE}/logout", self._page(self.logout))
        router.add_get(f"{BASE}/language", self._page(self.language, signed_in=False))
        router.add_get(f"{BASE}/", self._page(self.overview))
        router.add_get(f"{BASE}/discovery", self._page(self.discovery))
        router.add_get(f"{BASE}/requests", self._page(self.requests))
        router.add_get(f"{BASE}/requests/new", self._page(self.new_request))
        router.add_post(f"{BASE}/requests", self._page(self.send_request))
        router.add_get(f"{BASE}/requests/{{request_id}}", self._page(self.request_page))
        router.add_post(f"{BASE}/requests/{{request_id}}/decision", self._page(self.decide))
        router.add_post(f"{BASE}/requests/{{request_id}}/revocation", self._page(self.revoke))
        router.add_post(f"{BASE}/requests/{{request_id}}/fetch", self._page(self.fetch))
        router.add_get(f"{BASE}/audit", self._page(self.audit))

    # -- the frame every page shares --------------------------------------------------------

    async def _to_overview(self, _: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"{BASE}/")

    def _page(self, handler: Callable[..., Awaitable[web.StreamResponse]], *, signed_in: bool = True) -> Page:
        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                if request.method == "POST" and not _same_origin(request):
                    log.warning("portal: a form sent from another site", origin=request.headers.get("Origin"))
                    lang = self._language(request)
                    refused = [pages.error("the form was sent from another site", lang)]
                    raise Refused(self._html(request, text("refused", lang), refused, 403))
                if signed_in:
                    viewer = self._viewer(request)
                    if request.method == "POST":
                        form = await request.post()
                        if not pages.csrf_holds(viewer.token, str(form.get("csrf", ""))):
                            log.warning("portal: a form not of this session", holder=viewer.principal.name)
                            refused = [pages.error("the form is not this session's", viewer.lang)]
                            raise Refused(
                                self._html(request, text("refused", viewer.lang), refused, 403, viewer)
                            )
                    response = await handler(request, viewer)
                else:
                    response = await handler(request)
            except SignIn:
                response = web.HTTPSeeOther(f"{BASE}/login")
                response.del_cookie(SESSION_COOKIE, path=BASE)
            except Refused as said:
                response = said.response
            except web.HTTPException as exc:
                response = exc
            except HubUnreachable as exc:
                log.warning("portal: the hub did not answer", error=str(exc))
                lang = self._language(request)
                words = text("hub_away" if self.hub is not None else "no_hub", lang)
                response = self._html(request, text("refused", lang), [pages.error(words, lang)], 503)
            return self._secured(response)

        return serve

    def _secured(self, response: web.StreamResponse) -> web.StreamResponse:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = self.policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Not no-referrer: a browser then posts the portal's own forms with Origin: null.
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def _language(self, request: web.Request) -> Language:
        return "en" if request.cookies.get(LANGUAGE_COOKIE) == "en" else "da"

    def _viewer(self, request: web.Request) -> Viewer:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise SignIn
        try:
            principal = self.tokens.authenticate(f"Bearer {token}")
        except Unauthorized:
            raise SignIn from None
        if principal.region != self.region:
            raise SignIn
        return Viewer(principal, token, self._language(request), self.region)

    async def _mirror(self) -> MirrorState:
        return MirrorState.of(await asyncio.to_thread(self.store.shown), self.clock())

    def _html(
        self,
        request: web.Request,
        title: str,
        body: list[str],
        status: int = 200,
        viewer: Viewer | None = None,
        mirror: MirrorState | None = None,
    ) -> web.Response:
        lang = viewer.lang if viewer is not None else self._language(request)
        here = request.path_qs if request.method == "GET" else f"{BASE}/"
        html = pages.page(title, body, lang=lang, spoke=self.region, here=here, viewer=viewer, mirror=mirror)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def _hub(self) -> HubAccess:
        if self.hub is None:
            raise HubUnreachable("no hub access service is configured (GENOMHUB_SPOKE_HUB_ACCESS_URL)")
        return self.hub

    def _refused(self, request: web.Request, viewer: Viewer, title: str, answer: HubAnswer) -> web.Response:
        log.info(
            "portal: the hub refused", holder=viewer.principal.name, status=answer.status, path=request.path
        )
        return self._html(request, title, [pages.error(answer.message, viewer.lang)], answer.status, viewer)

    # -- signing in and out ---------------------------------------------------------------------

    async def login_page(
        self, request: web.Request, problem: str | None = None, status: int = 200
    ) -> web.Response:
        lang = self._language(request)
        return self._html(request, text("sign_in", lang), pages.login_body(lang, problem), status)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        try:
            principal: Principal = self.tokens.authenticate(f"Bearer {token}")
        except Unauthorized:
            log.info("portal sign-in refused", reason="unknown token")
            return await self.login_page(request, "invalid token", 401)
        if principal.region != self.region:
            log.info("portal sign-in refused", holder=principal.name, reason="another region's spoke")
            said = f"{principal.name} signs in on its own region's spoke, not {self.region.value}'s"
            return await self.login_page(request, said, 403)
        log.info("portal sign-in", holder=principal.name, roles=sorted(principal.roles))
        response = web.HTTPSeeOther(f"{BASE}/")
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_SECONDS,
            path=BASE,
            httponly=True,
            samesite="Strict",
            secure=not _on_loopback(request),
        )
        return response

    async def logout(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        log.info("portal sign-out", holder=viewer.principal.name)
        response = web.HTTPSeeOther(f"{BASE}/login")
        response.del_cookie(SESSION_COOKIE, path=BASE)
        return response

    async def language(self, request: web.Request) -> web.StreamResponse:
        to = request.query.get("to", "da")
        back = request.query.get("back", f"{BASE}/")
        on_the_portal = back == BASE or back.startswith(f"{BASE}/")
        if not on_the_portal or "//" in back or "\\" in back:
            back = f"{BASE}/"  # never a way off the portal
        response = web.HTTPSeeOther(back)
        response.set_cookie(
            LANGUAGE_COOKIE, "en" if to == "en" else "da", max_age=365 * 86400, path=BASE, samesite="Strict"
        )
        return response

    # -- the overview ---------------------------------------------------------------------------

    async def overview(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """The catalogue a page at a time, searched with the API's filters (the form sends
        empty fields for those left unset: they mean no filter)."""
        given = {k: v for k, v in request.query.items() if v != ""}
        repeated = {k for k in request.query if len(request.query.getall(k)) > 1}
        try:
            query = parse_parameters(SampleQuery, given, repeated)
        except InvalidParameters as exc:
            body = [pages.error(f"{p.field}: {p.message}", viewer.lang) for p in exc.problems]
            return self._html(request, text("overview", viewer.lang), body, 422, viewer, await self._mirror())
        shown, samples, cursor = await asyncio.to_thread(self.store.listed, query.search())
        mirror = MirrorState.of(shown, self.clock())
        following = {**given, "cursor": cursor} if cursor else None
        body = [pages.discovery_form(viewer), pages.catalogue(viewer, samples, given, following)]
        return self._html(request, text("overview", viewer.lang), body, 200, viewer, mirror)

    async def discovery(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        patient = request.query.get("patient", "").strip()
        case_reference = request.query.get("case_reference", "").strip()
        answer = await self._hub().discover(viewer.token, patient, case_reference)
        body = [pages.discovery_form(viewer, patient, case_reference)]
        if not answer.ok:
            body.append(pages.error(answer.message, viewer.lang))
            return self._html(
                request, text("lookup", viewer.lang), body, answer.status, viewer, await self._mirror()
            )
        body.append(pages.discovery_answer(viewer, answer.body, patient, case_reference))
        return self._html(request, text("lookup", viewer.lang), body, 200, viewer, await self._mirror())

    # -- requests -----------------------------------------------------------------------------

    async def requests(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        answer = await self._hub().requests(viewer.token)
        title = text("requests", viewer.lang)
        if not answer.ok:
            return self._refused(request, viewer, title, answer)
        return self._html(request, title, pages.requests_body(viewer, answer.body["requests"]), 200, viewer)

    def _clinician(self, request: web.Request, viewer: Viewer) -> None:
        if not viewer.may(Role.CLINICIAN):
            raise Refused(
                self._html(
                    request,
                    text("new_request", viewer.lang),
                    [pages.error("a request is made by a clinician", viewer.lang)],
                    403,
                    viewer,
                )
            )

    async def new_request(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        self._clinician(request, viewer)
        filled = {k: request.query.get(k, "") for k in ("owner", "patient", "samples", "case_reference")}
        body = [pages.request_form(viewer, filled)]
        return self._html(request, text("new_request", viewer.lang), body, 200, viewer)

    async def send_request(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        self._clinician(request, viewer)
        form = await request.post()
        filled: dict[str, str | list[str]] = {
            k: str(form.get(k, "")).strip()
            for k in ("owner", "patient", "samples", "department", "ranges", "case_reference", "urgency")
        }
        filled["wants"] = [str(w) for w in form.getall("wants", [])]
        title = text("new_request", viewer.lang)
        try:
            body = request_body(filled, str(form.get("purpose", "")))
        except ValueError as exc:
            return self._html(
                request,
                title,
                [pages.error(str(exc), viewer.lang), pages.request_form(viewer, filled)],
                422,
                viewer,
            )
        answer = await self._hub().ask(viewer.token, body)
        if not answer.ok:
            log.info(
                "portal: the hub refused",
                holder=viewer.principal.name,
                status=answer.status,
                path=request.path,
            )
            parts = [pages.error(answer.message, viewer.lang), pages.request_form(viewer, filled)]
            return self._html(request, title, parts, answer.status, viewer)
        raise web.HTTPSeeOther(f"{BASE}/requests/{answer.body['request']['request_id']}")

    def _request_id(self, request: web.Request) -> str:
        request_id = request.match_info["request_id"]
        if not REQUEST_ID.match(request_id):
            raise web.HTTPNotFound(text="no such request")
        return request_id

    async def _detail(
        self,
        request: web.Request,
        viewer: Viewer,
        request_id: str,
        *,
        problem: HubAnswer | None = None,
        said: str | None = None,
    ) -> web.Response:
        title = f"{text('request', viewer.lang)} {request_id[:12]}"
        answer = await self._hub().request(viewer.token, request_id)
        if not answer.ok:
            return self._refused(request, viewer, title, answer)
        view = answer.body
        objects = None
        mine = view["request"]["requester"]["region"] == self.region.value
        if mine and view["standing"] == "granted":
            listed = await self._hub().objects(viewer.token, request_id)
            objects = listed.body["objects"] if listed.ok else []
        status = problem.status if problem is not None else 200
        body = pages.request_detail(viewer, view, objects, problem.message if problem else None, said)
        return self._html(request, title, body, status, viewer)

    async def request_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        return await self._detail(request, viewer, self._request_id(request))

    async def decide(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        request_id = self._request_id(request)
        form = await request.post()
        grant = form.get("grant") == "yes"
        answer = await self._hub().decide(
            viewer.token, request_id, grant, str(form.get("reason", "")).strip()
        )
        if not answer.ok:
            return await self._detail(request, viewer, request_id, problem=answer)
        raise web.HTTPSeeOther(f"{BASE}/requests/{request_id}")

    async def revoke(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        request_id = self._request_id(request)
        form = await request.post()
        answer = await self._hub().revoke(viewer.token, request_id, str(form.get("reason", "")).strip())
        if not answer.ok:
            return await self._detail(request, viewer, request_id, problem=answer)
        raise web.HTTPSeeOther(f"{BASE}/requests/{request_id}")

    async def fetch(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """The copy's short-lived URL from the hub, under the grant: the browser is sent
        there, so the encrypted bytes go from the hub to the reader and never through the spoke."""
        request_id = self._request_id(request)
        form = await request.post()
        object_id, access_id = str(form.get("object_id", "")), str(form.get("access_id", ""))
        if access_id != request_id:
            raise web.HTTPUnprocessableEntity(text="a copy is fetched under the request it is listed by")
        answer = await self._hub().access_url(viewer.token, object_id, access_id)
        if answer.status == 202:
            wait = answer.retry_after or str(answer.body.get("retry_after", ""))
            return await self._detail(request, viewer, request_id, said=pages.on_tape(wait, viewer.lang))
        if not answer.ok or not isinstance(answer.body.get("url"), str):
            return await self._detail(request, viewer, request_id, problem=answer)
        url = answer.body["url"]
        if self.hub is not None and urlsplit(url).netloc != urlsplit(self.hub.url).netloc:
            raise web.HTTPBadGateway(text="the hub handed out a URL that is not its own")
        log.info("portal: working copy handed over", holder=viewer.principal.name, request_id=request_id)
        raise web.HTTPSeeOther(url)

    # -- the audit slice ------------------------------------------------------------------------

    async def audit(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        answer = await self._hub().audit(viewer.token)
        title = text("audit", viewer.lang)
        if not answer.ok:
            return self._refused(request, viewer, title, answer)
        return self._html(request, title, pages.audit_body(viewer, answer.body["entries"]), 200, viewer)


def request_body(filled: dict[str, Any], purpose: str) -> dict[str, Any]:
    """The access request the form says, or ValueError naming what a person got wrong before
    the hub's own checks (which refuse the rest, CPR numbers among them)."""
    samples = [s for s in re.split(r"[\s,;]+", str(filled.get("samples", ""))) if s]
    ranges = [
        genomic_range_fields(line) for line in str(filled.get("ranges", "")).splitlines() if line.strip()
    ]
    wants = list(filled.get("wants") or [])
    known = {d.value for d in Deliverable}
    if not wants or any(w not in known for w in wants):
        raise ValueError("choose what the working copy holds")
    body: dict[str, Any] = {
        "owner": filled.get("owner", ""),
        "samples": samples,
        "department": filled.get("department", ""),
        "wants": wants,
        "genomic_ranges": ranges,
        "purpose": purpose,
        "case_reference": filled.get("case_reference", ""),
        "urgency": filled.get("urgency") or "routine",
    }
    if filled.get("patient"):
        body["patient"] = filled["patient"]
    return body


def _same_origin(request: web.Request) -> bool:
    """Whether a POST comes from the portal's own pages, by the ``Origin`` a browser sends:
    sign-in has no session field yet, so this is what keeps another site from signing a
    visitor in under its own token. A client that sends none (a script) has the session
    field still to show."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == request.host


def _on_loopback(request: web.Request) -> bool:
    return not request.secure and (request.url.host or "") in LOOPBACK


def install(
    app: web.Application, store: SpokeStore, region: Region, tokens: Tokens, hub: HubAccess | None
) -> Portal:
    portal = Portal(store, region, tokens, hub)
    portal.install(app)
    return portal
