"""Grants as GA4GH Passport visas: a grant in force, signed as a ``ControlledAccessGrants``
visa, so a client that speaks GA4GH AAI (a Passport in DRS's POST body) needs no genomhub
token to fetch what the grant opens.

The access service is the visa's issuer and, for its own visas, the Passport's broker too:
it signs both with one ES256 key (P-256, GA4GH AAI's algorithms are RS256 and ES256) whose
public half is published as a JWKS, so anyone can check a visa offline. A visa says who was
granted (``sub``: the requesting region, as its token's holder), which grant (``value``: the
request's URL at the issuer), by whom (``source``: the owning region) and until when (``exp``:
the grant's end). It is a claim to be checked at every use, never the grant itself: DRS looks
the request up and asks its standing at that moment, so a revoked grant's visa opens nothing
although it still verifies.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

VISA_TYPE = "ControlledAccessGrants"
ALGORITHM = "ES256"
MAX_VISAS = 20
"""Visas read from one Passport: more is a client sending what it should not."""


class PassportRefused(Exception):
    """A Passport or visa that is not the service's, malformed, expired or of no grant."""


@dataclass(frozen=True)
class VisaKey:
    """The key that signs visas and Passports (the same on every replica)."""

    key: ECKey

    @classmethod
    def of(cls, configured: str | None, home: Path) -> VisaKey:
        """The configured key (PEM), or the one kept at ``home`` (made once, 0600) so that an
        embedded service's visas stay valid across a restart."""
        if configured:
            return cls.from_pem(configured.encode())
        path = home / "access-visa.pem"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            made = ECKey.generate_key("P-256", private=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(made.as_pem(private=True))
        return cls.from_pem(path.read_bytes())

    @classmethod
    def from_pem(cls, pem: bytes) -> VisaKey:
        """The key from its PEM, or from the PEM base64-encoded on one line (an env file's
        value, as a Kubernetes Secret made from one holds it)."""
        if not pem.lstrip().startswith(b"-----BEGIN"):
            pem = base64.b64decode(pem)
        loaded = ECKey.import_key(pem)
        return cls(
            ECKey.import_key(pem, parameters={"kid": loaded.thumbprint(), "use": "sig", "alg": ALGORITHM})
        )

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public half, as a JSON Web Key Set."""
        return dict(KeySet([self.key]).as_dict(private=False))

    def sign(self, claims: dict[str, Any], issuer: str) -> str:
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": self.kid, "jku": f"{issuer}/.well-known/jwks.json"}
        return jwt.encode(header, claims, self.key)

    def verified(self, token: str, issuer: str, now: datetime) -> dict[str, Any]:
        """The claims of a JWT this key signed for ``issuer``, in force at ``now``."""
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError) as exc:
            raise PassportRefused(f"not a JWT signed by this service: {type(exc).__name__}") from None
        claims = decoded.claims
        if claims.get("iss") != issuer:
            raise PassportRefused("issued by someone else")
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires <= now.timestamp():
            raise PassportRefused("expired")
        return claims


@dataclass(frozen=True)
class Passports:
    """The service as a visa issuer: its key and the issuer URL its visas carry."""

    key: VisaKey
    issuer: str


def request_url(issuer: str, request_id: str) -> str:
    return f"{issuer}/v1/access/requests/{request_id}"


def _registered(issuer: str, subject: str, expires: datetime, now: datetime) -> dict[str, Any]:
    """The claims every JWT of the service carries: who says it, of whom, when, until when."""
    return {
        "iss": issuer,
        "sub": subject,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }


def visa(
    key: VisaKey,
    issuer: str,
    *,
    subject: str,
    request_id: str,
    owner: str,
    asserted: datetime,
    expires: datetime,
    now: datetime,
) -> str:
    """A signed ``ControlledAccessGrants`` visa of one grant."""
    claims = {
        **_registered(issuer, subject, expires, now),
        "ga4gh_visa_v1": {
            "type": VISA_TYPE,
            "asserted": int(asserted.timestamp()),
            "value": request_url(issuer, request_id),
            "source": f"{issuer}/regions/{owner}",
            "by": "dac",
        },
    }
    return key.sign(claims, issuer)


def passport(
    key: VisaKey, issuer: str, *, subject: str, visas: list[str], expires: datetime, now: datetime
) -> str:
    """A signed Passport carrying ``visas``."""
    claims = {**_registered(issuer, subject, expires, now), "ga4gh_passport_v1": visas}
    return key.sign(claims, issuer)


@dataclass(frozen=True)
class VisaGrant:
    """What a verified visa claims: ``subject`` was granted request ``request_id``."""

    subject: str
    request_id: str


def grants_in(key: VisaKey, issuer: str, passports: list[str], now: datetime) -> list[VisaGrant]:
    """The grants the ``ControlledAccessGrants`` visas of ``passports`` claim, every
    Passport and visa verified (signature, issuer, expiry); visas of other types are
    ignored, as a clearinghouse does. A visa must name the Passport's own subject."""
    found = []
    prefix = request_url(issuer, "")
    for text in passports:
        claims = key.verified(text, issuer, now)
        subject = claims.get("sub")
        visas = claims.get("ga4gh_passport_v1")
        if not isinstance(subject, str) or not isinstance(visas, list) or len(visas) > MAX_VISAS:
            raise PassportRefused("not a GA4GH Passport (sub, ga4gh_passport_v1)")
        for visa_text in visas:
            if not isinstance(visa_text, str):
                raise PassportRefused("a visa is not a JWT")
            visa_claims = key.verified(visa_text, issuer, now)
            said = visa_claims.get("ga4gh_visa_v1")
            if not isinstance(said, dict) or said.get("type") != VISA_TYPE:
                continue
            value = said.get("value")
            if visa_claims.get("sub") != subject:
                raise PassportRefused("a visa names another subject than its Passport")
            if not isinstance(value, str) or not value.startswith(prefix) or "/" in value[len(prefix) :]:
                raise PassportRefused("a visa names no grant of this service")
            found.append(VisaGrant(subject, value[len(prefix) :]))
    return found
