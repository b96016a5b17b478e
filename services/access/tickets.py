"""Short-lived working-copy URLs: a ticket names the grant, the object and the requester, and
an HMAC over it makes it the service's own.

DRS hands a client an ``AccessURL`` that a plain HTTP client (curl, a browser, ``genomhub
fetch``) can open without the bearer token, so the URL itself is the credential: it opens
one object, under one grant, for one requester, for minutes. The grant is checked again
when the URL is opened and between the chunks of the download, so a ticket never outlives a
revocation; its own expiry only bounds how long a leaked URL is worth anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


class BadTicket(Exception):
    """A ticket that is not ours, is malformed, or has expired; the message says which."""


@dataclass(frozen=True)
class Ticket:
    request_id: str
    object_id: str
    requester: str
    expires: int
    """Unix seconds."""
    part: str = "whole-file"
    """``whole-file``, or an htsget ``slice`` (of ``locus``, or the header alone without one)."""
    locus: dict[str, Any] | None = None
    """The slice's range as a :class:`shared.events.GenomicRange` dumps it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(
    request_id: str,
    object_id: str,
    requester: str,
    now: datetime,
    minutes: int,
    secret: bytes,
    *,
    part: str = "whole-file",
    locus: dict[str, Any] | None = None,
) -> str:
    """The signed text of a ticket that opens until ``minutes`` after ``now``."""
    expires = int((now + timedelta(minutes=minutes)).timestamp())
    ticket = Ticket(request_id, object_id, requester, expires, part, locus)
    payload = _b64(json.dumps(asdict(ticket), sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def check(text: str, secret: bytes, now: datetime) -> Ticket:
    """The ticket ``text`` carries, once its signature and expiry hold; else :class:`BadTicket`."""
    payload, dot, signature = text.partition(".")
    if not dot or not payload or not signature:
        raise BadTicket("not a working-copy ticket")
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        fields = json.loads(_unb64(payload))
        ticket = Ticket(**fields)
    except (binascii.Error, ValueError, TypeError):
        raise BadTicket("not a working-copy ticket") from None
    if not hmac.compare_digest(expected, given):
        raise BadTicket("the ticket's signature is not the service's")
    if now.timestamp() >= ticket.expires:
        raise BadTicket("the download URL has expired: ask DRS for a new one")
    return ticket


def url_secret(configured: str | None, home: Path) -> bytes:
    """The signing secret: the configured one, or the one kept at ``home`` (made once, 0600)
    so that an embedded service keeps its URLs valid across a restart."""
    if configured:
        return configured.encode()
    path = home / "access-url.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(os.urandom(32).hex())
    return path.read_text().strip().encode()
