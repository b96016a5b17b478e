"""``genomhub access ...`` and ``genomhub audit ...``.

``access request|decide|revoke|list|department-key`` are clients of the access service's HTTP API: a
clinician or a data steward acts with their own token (read from an environment variable,
``$GENOMHUB_ACCESS_TOKEN`` unless ``--token-env`` names another, never from the command
line), so the service applies the same rules, roles and ledger as to any caller.

``fetch drs://host/id`` is the department's client of a working copy: DRS resolves it, the
bytes are decrypted with the department's secret key as they arrive, and the plaintext is
kept only if its sha-256 is DRS's.

``audit show|verify`` read the ledger's database directly (``GENOMHUB_ACCESS_DATABASE_URL``) as NGC's
operator, inside NGC next to the database: ``verify`` recomputes every entry's hash and link
and names the first entry that does not hold, exiting 1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import click

from services.access.ledger import first_break
from services.access.store import AccessStore
from shared.config import AccessSettings
from shared.encryption import BodyDecryptor, EncryptionError, load_archive_key, split_header
from shared.events import GENOMIC_RANGE_FORM, Deliverable, Region, Urgency, genomic_range_fields
from shared.http import LOOPBACK

HTSGET_ENDPOINTS = {".cram": "reads", ".vcf.gz": "variants"}
"""Which htsget endpoint slices an object, by the end of its name."""


def genomic_range(text: str) -> dict[str, Any]:
    """``chr17`` or ``chr17:START-END`` as a genomic range's fields (the numbers as htsget's)."""
    try:
        return genomic_range_fields(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _call(ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One call of the API as the token's holder; an error answer is printed and exits 1."""
    base, token, ca_bundle = ctx.obj["url"], ctx.obj["token"], ctx.obj["ca_bundle"]
    parts = urlsplit(base)
    if parts.scheme != "https" and parts.hostname not in LOOPBACK:
        raise click.UsageError("the access service is reached over https:// (plain http only to loopback)")
    request = urllib.request.Request(
        base.rstrip("/") + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(errors="replace"), err=True)
        sys.exit(1)


@click.group("access")
@click.option("--url", help="The access service. Unset: http://127.0.0.1:<GENOMHUB_ACCESS_PORT>.")
@click.option(
    "--token-env", default="GENOMHUB_ACCESS_TOKEN", show_default=True, help="Env var with the token."
)
@click.option(
    "--ca-bundle", type=click.Path(path_type=Path, exists=True), help="PEM CA of NGC's certificate."
)
@click.pass_context
def access(ctx: click.Context, url: str | None, token_env: str, ca_bundle: Path | None) -> None:
    """Working-copy requests: ask, decide, revoke, list (with your own token)."""
    token = os.environ.get(token_env)
    if not token:
        raise click.UsageError(f"set your bearer token in ${token_env}")
    ctx.obj = {
        "url": url or f"http://127.0.0.1:{AccessSettings().port}",
        "token": token,
        "ca_bundle": ca_bundle,
    }


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@access.command("discover")
@click.argument("patient")
@click.option("--case", "case_reference", required=True, help="The case reference (logged).")
@click.pass_context
def discover(ctx: click.Context, patient: str, case_reference: str) -> None:
    """Whether the national database holds data for a national patient pseudonym."""
    _echo(
        _call(
            ctx, "GET", "/v1/discovery?" + urlencode({"patient": patient, "case_reference": case_reference})
        )
    )


@access.command("request")
@click.option(
    "--owner", required=True, type=click.Choice([r.value for r in Region]), help="The region holding it."
)
@click.option("--patient", help="The national patient pseudonym (or name --sample).")
@click.option("--sample", "samples", multiple=True, help="A sample pseudonym of the owner (repeatable).")
@click.option("--department", required=True)
@click.option(
    "--want", "wants", multiple=True, required=True, type=click.Choice([d.value for d in Deliverable])
)
@click.option("--range", "ranges", multiple=True, help=f"A genomic range: {GENOMIC_RANGE_FORM}.")
@click.option("--case", "case_reference", required=True, help="The case reference of the treatment.")
@click.option(
    "--urgency", type=click.Choice([u.value for u in Urgency]), default="routine", show_default=True
)
@click.pass_context
def request(ctx: click.Context, /, ranges: tuple[str, ...], **options: Any) -> None:
    """Request a working copy for patient treatment; prints the request."""
    genomic = [genomic_range(text) for text in ranges]
    body = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items() if v not in (None, ())}
    _echo(
        _call(
            ctx,
            "POST",
            "/v1/access/requests",
            {**body, "genomic_ranges": genomic, "purpose": "patient-treatment"},
        )
    )


@access.command("decide")
@click.argument("request_id")
@click.option("--grant/--deny", required=True)
@click.option("--reason", default="", help="Why (required with --deny).")
@click.pass_context
def decide(ctx: click.Context, request_id: str, grant: bool, reason: str) -> None:
    """The owning region's data steward grants or denies a request."""
    _echo(
        _call(
            ctx,
            "POST",
            f"/v1/access/requests/{quote(request_id, safe='')}/decision",
            {"grant": grant, "reason": reason},
        )
    )


@access.command("revoke")
@click.argument("request_id")
@click.option("--reason", required=True)
@click.pass_context
def revoke(ctx: click.Context, request_id: str, reason: str) -> None:
    """Revoke a grant at once (the owner's data steward, or NGC's operator)."""
    _echo(
        _call(ctx, "POST", f"/v1/access/requests/{quote(request_id, safe='')}/revocation", {"reason": reason})
    )


@access.command("list")
@click.pass_context
def list_requests(ctx: click.Context) -> None:
    """The requests your region made or owns (a steward's inbox: standing `pending`)."""
    for item in _call(ctx, "GET", "/v1/access/requests")["requests"]:
        asked = item["request"]
        click.echo(
            f"{asked['request_id']}  {item['standing']:<8} owner={asked['owner']} "
            f"by={asked['requester']['region']} case={asked['case_reference']} urgency={asked['urgency']}"
        )


@access.command("objects")
@click.argument("request_id")
@click.pass_context
def request_objects(ctx: click.Context, request_id: str) -> None:
    """The files a request covers, as DRS URIs for `genomhub fetch` (while it is a grant)."""
    answered = _call(ctx, "GET", f"/v1/access/requests/{quote(request_id, safe='')}/objects")
    for found in answered["objects"]:
        usable = "fetchable" if found["access_methods"] else "not granted"
        click.echo(f"{found['self_uri']}  {found['size']:>12}  {usable:<11}  {found['name']}")


@access.group("department-key")
def department_key() -> None:
    """The departments' Crypt4GH public keys, that working copies are encrypted to."""


@department_key.command("register")
@click.option("--region", required=True, type=click.Choice([r.value for r in Region]))
@click.option("--department", required=True, help="As the department's requests name it.")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The department's Crypt4GH public key file.",
)
@click.pass_context
def register_key(ctx: click.Context, region: str, department: str, public_key: Path) -> None:
    """Register or replace a department's key (its region's data steward, or NGC's operator)."""
    body = {"region": region, "department": department, "public_key": public_key.read_text()}
    _echo(_call(ctx, "POST", "/v1/access/department-keys", body))


@department_key.command("list")
@click.pass_context
def list_keys(ctx: click.Context) -> None:
    """Your region's registered department keys (NGC: all), with their fingerprints."""
    for key in _call(ctx, "GET", "/v1/access/department-keys")["keys"]:
        click.echo(f"{key['region']:<12} {key['fingerprint'][:16]}  {key['department']}")


@click.command("fetch")
@click.argument("drs_uri")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--secret-key",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The department's Crypt4GH secret key (its passphrase in $C4GH_PASSPHRASE).",
)
@click.option(
    "--public-key",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Its public half (checked against the secret one).",
)
@click.option(
    "--range", "locus", help=f"Only this range of a CRAM or VCF, through htsget: {GENOMIC_RANGE_FORM}."
)
@click.option("--token-env", default="GENOMHUB_ACCESS_TOKEN", show_default=True)
@click.option("--ca-bundle", type=click.Path(path_type=Path, exists=True))
def fetch(
    drs_uri: str,
    output: Path,
    secret_key: Path,
    public_key: Path,
    locus: str | None,
    token_env: str,
    ca_bundle: Path | None,
) -> None:
    """Fetch a working copy (drs://host/id): resolve its access URL under your grant, download,
    decrypt with the department's key as it streams, and check the sha-256 DRS states.

    With ``--range``, only that range of a CRAM or VCF, as an htsget slice (a CRAM or VCF of
    its own, holding every record of the range); DRS states no checksum of a slice, so its
    size and sha-256 are printed. The plaintext goes to a temporary file beside OUTPUT and is
    renamed into place only when every check holds; a copy that is cut (a revocation) or
    fails a check leaves nothing. A file on tape exits 3, saying when to try again."""
    parts = urlsplit(drs_uri)
    object_id = parts.path.strip("/")
    if parts.scheme != "drs" or not parts.netloc or not object_id:
        raise click.UsageError("expected drs://<host>/<object id>")
    token = os.environ.get(token_env)
    if not token:
        raise click.UsageError(f"set your bearer token in ${token_env}")
    host = parts.hostname or ""
    scheme = "http" if host in LOOPBACK else "https"
    ctx = click.Context(
        fetch, obj={"url": f"{scheme}://{parts.netloc}", "token": token, "ca_bundle": ca_bundle}
    )
    quoted = quote(object_id, safe="")
    described = _call(ctx, "GET", f"/ga4gh/drs/v1/objects/{quoted}")
    methods = described.get("access_methods") or []
    if not methods:
        click.echo("no access method: no grant in force lets you have this object", err=True)
        sys.exit(1)
    wanted: str | None = None
    size: int | None = None
    if locus is None:
        access_id = quote(methods[0]["access_id"], safe="")
        url = _ready(_call(ctx, "GET", f"/ga4gh/drs/v1/objects/{quoted}/access/{access_id}"))["url"]
        wanted = next(c["checksum"] for c in described["checksums"] if c["type"] == "sha-256")
        size = int(described["size"])
    else:
        endpoint = next((e for end, e in HTSGET_ENDPOINTS.items() if described["name"].endswith(end)), None)
        if endpoint is None:
            raise click.UsageError(f"{described['name']} is no CRAM or VCF: only those are sliced")
        asked = genomic_range(locus)
        fields: dict[str, Any] = {"referenceName": asked.pop("reference_name"), **asked}
        query = urlencode(fields)
        ticket = _ready(_call(ctx, "GET", f"/ga4gh/htsget/v1/{endpoint}/{quoted}?{query}"))["htsget"]
        (url,) = [u["url"] for u in ticket["urls"]]
    key = load_archive_key(secret_key, public_key, os.environ.get("C4GH_PASSPHRASE", ""))
    context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
    partial = output.with_name(output.name + ".part")
    digest = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=60, context=context) as response, partial.open("wb") as out:
            header = split_header(response)
            with BodyDecryptor(header, response, key, size) as body:
                for segment in body.segments():
                    digest.update(segment)
                    out.write(segment)
                    got += len(segment)
    except (urllib.error.URLError, http.client.HTTPException, OSError, EncryptionError) as exc:
        partial.unlink(missing_ok=True)
        click.echo(f"working copy not fetched: {exc}", err=True)
        sys.exit(1)
    if wanted is not None and digest.hexdigest() != wanted:
        partial.unlink(missing_ok=True)
        click.echo(f"the copy's sha-256 {digest.hexdigest()} is not DRS's {wanted}: discarded", err=True)
        sys.exit(1)
    partial.replace(output)
    if wanted is None:
        click.echo(
            f"{output}: slice {locus} of {described['name']}, {got} bytes, sha-256 {digest.hexdigest()}"
        )
    else:
        click.echo(f"{output}: {described['size']} bytes, sha-256 {wanted} verified")


def _ready(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer``, unless it is a 202's: the file is on tape; say when to ask again, exit 3."""
    if "retry_after" in answer and "url" not in answer and "htsget" not in answer:
        click.echo(
            f"on tape: recall {answer['recall_id']} is {answer['state']}; try again in {answer['retry_after']} s",
            err=True,
        )
        sys.exit(3)
    return answer


@click.group("audit")
def audit() -> None:
    """The access audit ledger (NGC's operators, next to its database)."""


def _store() -> AccessStore:
    return AccessStore(AccessSettings().database_url)


@audit.command("show")
@click.option(
    "--region", type=click.Choice([r.value for r in Region]), help="Only what concerns this region."
)
@click.option("--json", "as_json", is_flag=True)
def audit_show(region: str | None, as_json: bool) -> None:
    """The ledger's entries in chain order."""
    store = _store()
    try:
        entries = store.entries(Region(region) if region else None)
    finally:
        store.dispose()
    for e in entries:
        if as_json:
            click.echo(json.dumps({**e.body(), "sha256": e.sha256}, ensure_ascii=False))
        else:
            click.echo(
                f"{e.seq:>6} {e.at} {e.actor:<11} {e.action:<10} {e.request_id or '-':<32} {e.case_reference}"
            )


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the chain; exit 1 naming the first entry that does not hold."""
    store = _store()
    try:
        entries = store.entries()
    finally:
        store.dispose()
    broken = first_break(entries)
    if broken is not None:
        click.echo(f"audit ledger broken at entry {broken.seq}: {broken.reason}", err=True)
        sys.exit(1)
    head = entries[-1].sha256 if entries else "(empty)"
    click.echo(f"audit ledger verified: {len(entries)} entries, head {head}")
