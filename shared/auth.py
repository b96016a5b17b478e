"""Who may call a genomhub HTTP API: bearer tokens, one per region, held as hashes.

The settings hold only the sha256 of each token (``GENOMHUB_TOKENS``, a JSON object from
hash to holder), so a leaked configuration grants nothing. A holder is a region, which acts
only for itself, or ``ngc``, the national operator (finance, operations), which reads all.
Every request is logged with its holder and outcome, and never with the token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

from shared.events import Region
from shared.http import PROBES, http_error
from shared.telemetry import get_logger

NATIONAL = "ngc"
log = get_logger(__name__)


class Unauthorized(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    """The holder of a token: a region, or the national operator."""

    name: str

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

    def __init__(self, hashes: Mapping[str, str]) -> None:
        valid = {r.value for r in Region} | {NATIONAL}
        for digest, holder in hashes.items():
            if holder not in valid:
                raise ValueError(f"token holder {holder!r} is neither a region nor {NATIONAL!r}")
            if len(digest) != 64:
                raise ValueError("token entries must be sha256 hex digests, never plain tokens")
        self._holders = {d.lower(): h for d, h in hashes.items()}

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        holder = self._holders.get(token_hash(token.strip()))
        if holder is None:
            raise Unauthorized("invalid token")
        return Principal(holder)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
PRINCIPAL_KEY = web.RequestKey("principal", Principal)


def bearer_auth(tokens: Tokens, public: Iterable[str] = PROBES) -> Middleware:
    """aiohttp middleware: authenticate every request but the public ones, and log it."""
    open_paths = frozenset(public)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
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


def require_region(request: web.Request, region: Region | str) -> Principal:
    """The caller, if it may act for ``region``; else 403."""
    principal = principal_of(request)
    if not principal.may_act_for(region):
        raise http_error(403, f"{principal.name} may not act for {region}")
    return principal
