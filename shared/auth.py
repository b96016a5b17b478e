"""Who may call a genomhub HTTP API: bearer tokens, held as hashes, each with a holder and roles.

The settings hold only the sha256 of each token (``GENOMHUB_TOKENS``, a JSON object from
hash to holder), so a leaked configuration grants nothing. A holder is a region, which acts
only for itself, or ``ngc``, the national operator (finance, operations), which reads all.
Every request is logged with its holder and outcome, and never with the token.

A token also carries roles (:class:`Role`): what the person behind it does, which the access
service's routes name (a clinician asks and requests, a region's data steward decides). An
entry is either the holder alone (``"hovedstaden"``: the form from before roles, which keeps
the roles such tokens were used for: a region's uploads, NGC's finance and operations) or an
object ``{"holder": "hovedstaden", "roles": ["data-steward"]}``. No legacy token is a
clinician or a data steward: access to another region's data is only ever granted by name.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import web

from shared.events import Region
from shared.http import PROBES, http_error
from shared.telemetry import get_logger

NATIONAL = "ngc"
log = get_logger(__name__)


class Unauthorized(Exception):
    pass


class Role(StrEnum):
    """What the person behind a token does; a route that names roles admits only them."""

    UPLOADER = "uploader"
    CLINICIAN = "clinician"
    DATA_STEWARD = "data-steward"
    FINANCE = "finance"
    OPERATOR = "operator"


LEGACY_ROLES: dict[bool, frozenset[Role]] = {
    False: frozenset({Role.UPLOADER}),
    True: frozenset({Role.FINANCE, Role.OPERATOR}),
}
"""The roles of a token entry that names only its holder (keyed by "is it NGC's"): what such
tokens did before roles existed, so existing settings keep working unchanged."""

TokenEntry = str | Mapping[str, object]
"""One value of ``GENOMHUB_TOKENS``: a holder, or ``{"holder": ..., "roles": [...]}``."""


@dataclass(frozen=True)
class Principal:
    """The holder of a token (a region, or the national operator) and the roles it has."""

    name: str
    roles: frozenset[Role] = field(default_factory=frozenset)

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def region(self) -> Region | None:
        return None if self.name == NATIONAL else Region(self.name)

    @property
    def national(self) -> bool:
        return self.name == NATIONAL

    def may_act_for(self, region: Region | str) -> bool:
        return self.national or self.name == str(region)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Tokens:
    """The configured token hashes, and the check of an ``Authorization`` header."""

    def __init__(self, hashes: Mapping[str, TokenEntry]) -> None:
        self._holders: dict[str, Principal] = {}
        for digest, entry in hashes.items():
            if len(digest) != 64:
                raise ValueError("token entries must be sha256 hex digests, never plain tokens")
            self._holders[digest.lower()] = principal_of_entry(entry)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        principal = self._holders.get(token_hash(token.strip()))
        if principal is None:
            raise Unauthorized("invalid token")
        return principal


def principal_of_entry(entry: TokenEntry) -> Principal:
    """The principal a ``GENOMHUB_TOKENS`` value names, or ValueError saying what is wrong."""
    valid = {r.value for r in Region} | {NATIONAL}
    holder: object
    roles: list[str] | None
    if isinstance(entry, str):
        holder, roles = entry, None
    elif isinstance(entry, Mapping):
        unknown = set(entry) - {"holder", "roles"}
        if unknown:
            raise ValueError(f"a token entry has only 'holder' and 'roles', not {sorted(unknown)}")
        holder, listed = entry.get("holder"), entry.get("roles")
        if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
            raise ValueError("a token entry's 'roles' is a list of role names")
        roles = [str(r) for r in listed]
    else:
        raise ValueError("a token entry is a holder or an object with 'holder' and 'roles'")
    if not isinstance(holder, str) or holder not in valid:
        raise ValueError(f"token holder {holder!r} is neither a region nor {NATIONAL!r}")
    if roles is None:
        return Principal(holder, LEGACY_ROLES[holder == NATIONAL])
    known = {r.value for r in Role}
    for role in roles:
        if role not in known:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(sorted(known))}")
    return Principal(holder, frozenset(Role(r) for r in roles))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
PRINCIPAL_KEY = web.RequestKey("principal", Principal)


def bearer_auth(tokens: Tokens, public: Iterable[str] = PROBES) -> Middleware:
    """aiohttp middleware: authenticate every request but the public ones, and log it.

    A public path may be a route's template (``/v1/working-copies/{ticket}``: a URL that is
    its own credential), matched against the route the request was routed to, and may name
    its one method (``POST /ga4gh/drs/v1/objects/{object_id}``: DRS's Passport form of a
    path whose GET takes a token)."""
    open_paths = frozenset(public)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else None
        asked = (request.path, template, f"{request.method} {request.path}", f"{request.method} {template}")
        if not open_paths.isdisjoint(asked):
            return await handler(request)
        started = time.perf_counter()
        holder = "-"
        status = 500
        try:
            try:
                principal = tokens.authenticate(request.headers.get("Authorization"))
            except Unauthorized as exc:
                status = 401
                raise http_error(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
            holder = principal.name
            request[PRINCIPAL_KEY] = principal
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.info(
                "http request",
                method=request.method,
                path=request.path,
                holder=holder,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )

    return middleware


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise http_error(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


def require_role(request: web.Request, roles: Iterable[Role]) -> Principal:
    """The caller, if it has one of ``roles``; else 403 naming them."""
    principal = principal_of(request)
    wanted = sorted(roles)
    if not any(principal.has(r) for r in wanted):
        raise http_error(403, f"this needs the role {' or '.join(wanted)}, which the token does not have")
    return principal


def require_region(request: web.Request, region: Region | str) -> Principal:
    """The caller, if it may act for ``region``; else 403."""
    principal = principal_of(request)
    if not principal.may_act_for(region):
        raise http_error(403, f"{principal.name} may not act for {region}")
    return principal
