"""The hub's access service as the region's portal reaches it: every question, request and
decision is the hub's to answer and to write on its ledger, so the portal holds none of them.

The portal calls with the signed-in person's own bearer token, so the hub decides who may do
what exactly as it does for the command line, and its ledger names that person's region and
role, never the spoke. Only metadata crosses: a working copy is fetched by the browser from
the short-lived URL the hub hands out, encrypted to the department's key.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from shared.http import LOOPBACK


class HubUnreachable(Exception):
    """The hub did not answer: the portal says so rather than showing stale answers."""


@dataclass(frozen=True)
class HubAnswer:
    """What the hub answered: its status and its body (the one error body on a refusal)."""

    status: int
    body: Any
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The hub's own words for a refusal, its field problems included."""
        if not isinstance(self.body, dict):
            return str(self.body)
        said = str(self.body.get("error") or self.body.get("detail") or self.status)
        problems = [
            f"{p.get('field')}: {p.get('message')}"
            for p in self.body.get("problems") or []
            if isinstance(p, dict)
        ]
        return "; ".join([said, *problems])


@dataclass
class HubAccess:
    """The hub's access API at ``url`` (``https://``; plain ``http://`` to loopback only)."""

    url: str
    ca_bundle: Path | None = None
    timeout_seconds: float = 30.0
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"the hub's access service is an http(s) URL, not {self.url!r}")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise ValueError(
                "the hub's access service is reached over https:// (plain http only to loopback)"
            )
        self.url = self.url.rstrip("/")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context(cafile=str(self.ca_bundle)) if self.ca_bundle else None
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
                connector=aiohttp.TCPConnector(ssl=context) if context is not None else None,
            )
        return self._session

    async def call(
        self, token: str, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> HubAnswer:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            async with self._client().request(
                method, self.url + path, json=body, params=params, headers=headers, allow_redirects=False
            ) as response:
                try:
                    answered: Any = await response.json(content_type=None)
                except ValueError:
                    answered = {"error": (await response.text())[:500]}
                return HubAnswer(response.status, answered, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HubUnreachable(f"the hub's access service did not answer: {type(exc).__name__}") from exc

    # -- the routes the portal uses, by what they are in the domain -------------------------

    async def discover(self, token: str, patient: str, case_reference: str) -> HubAnswer:
        return await self.call(
            token, "GET", "/v1/discovery", params={"patient": patient, "case_reference": case_reference}
        )

    async def requests(self, token: str) -> HubAnswer:
        return await self.call(token, "GET", "/v1/access/requests")

    async def request(self, token: str, request_id: str) -> HubAnswer:
        return await self.call(token, "GET", f"/v1/access/requests/{quote(request_id, safe='')}")

    async def ask(self, token: str, body: dict[str, Any]) -> HubAnswer:
        return await self.call(token, "POST", "/v1/access/requests", body)

    async def decide(self, token: str, request_id: str, grant: bool, reason: str) -> HubAnswer:
        path = f"/v1/access/requests/{quote(request_id, safe='')}/decision"
        return await self.call(token, "POST", path, {"grant": grant, "reason": reason})

    async def revoke(self, token: str, request_id: str, reason: str) -> HubAnswer:
        path = f"/v1/access/requests/{quote(request_id, safe='')}/revocation"
        return await self.call(token, "POST", path, {"reason": reason})

    async def objects(self, token: str, request_id: str) -> HubAnswer:
        return await self.call(token, "GET", f"/v1/access/requests/{quote(request_id, safe='')}/objects")

    async def access_url(self, token: str, object_id: str, access_id: str) -> HubAnswer:
        path = f"/ga4gh/drs/v1/objects/{quote(object_id, safe='')}/access/{quote(access_id, safe='')}"
        return await self.call(token, "GET", path)

    async def audit(self, token: str) -> HubAnswer:
        return await self.call(token, "GET", "/v1/audit")
