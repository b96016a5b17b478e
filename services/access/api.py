"""The access service's HTTP API: discovery, requests, the owner's inbox and decisions,
revocation, and the audit ledger's slices.

Each route names the roles that may call it (``roles=`` in its declaration, shown in the
OpenAPI document as ``x-genomhub-roles``). Beyond the role, the rules of ``grants`` decide:
only the owning region's data steward decides; the owner's steward or NGC's operator
revokes. Every discovery question, request, decision, revocation and every refusal of one
of them is a ledger entry; a request answers who asked, why (the case reference) and what.

    GET  /v1/discovery?patient=P&case_reference=C      exists / which region / types / months
    POST /v1/access/requests                           a clinician's request (access-requested)
    GET  /v1/access/requests                           the requests a region made or owns
    GET  /v1/access/requests/{request_id}              one request and where it stands now
    GET  /v1/access/requests/{request_id}/objects      the DRS objects it names (access methods under its grant)
    POST /v1/access/requests/{request_id}/decision     grant or deny (access-decided)
    POST /v1/access/requests/{request_id}/revocation   revoke a grant at once (access-revoked)
    POST /v1/access/department-keys                    register a department's Crypt4GH public key
    GET  /v1/access/department-keys                    the keys of the token's region; NGC: all
    GET  /v1/audit                                     the ledger entries the token may read
    GET  /ga4gh/drs/v1/objects/{object_id}             DRS 1.4 object metadata, under a grant
    GET  /ga4gh/drs/v1/objects/{id}/access/{access_id} a short-lived URL of the working copy
    GET  /v1/working-copies/{ticket}                   the working copy's bytes (the URL is the credential)

A working copy is Crypt4GH encrypted to the requesting department's registered key. Its
download reads the grant again between chunks, and a revocation on this replica cuts every
download in progress under that grant at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal, NoReturn, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.access import discovery, tickets
from services.access.availability import RecallUnderWay, RecallWait, availability
from services.access.delivery import (
    GRANT_RECHECK_SECONDS,
    Delivery,
    ReadAhead,
    Slice,
    WholeFile,
    slice_of,
    whole_file,
)
from services.access.grants import (
    NotAllowed,
    Standing,
    check_decider,
    check_key_registrar,
    check_revoker,
    covers,
    grant_end,
    may_read_request,
    opens,
)
from services.access.ledger import Action
from services.access.objects import AccessUrl, ArchivedObject, DrsObject, drs_object
from services.access.objects import object_id as object_id_of
from services.access.passports import PassportRefused, Passports, grants_in, passport, visa
from services.access.request_body import (
    AccessRequestBody,
    DecisionBody,
    DepartmentKeyBody,
    PassportsBody,
    RequestRefused,
    RevocationBody,
    parse_body,
    parse_passports,
)
from services.access.slices import UNMAPPED, SliceRefused, UnreadableIndex
from services.access.store import AccessStore, Audit, Conflict, DepartmentKey, RequestRecord
from shared.api import Answer, Api, answer, path_of, query_of, refusal, route
from shared.auth import Principal, Role, Tokens, principal_of
from shared.bus import new_event_id
from shared.encryption import EncryptionError, public_key_text
from shared.envelope import derive_id
from shared.events import (
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    Deliverable,
    Event,
    GenomicRange,
    Pseudonym,
    Region,
    Requester,
    RequestId,
    SampleRef,
    TypedText,
    WorkingCopyIssued,
    new_request_id,
)
from shared.headers import MissingHeader
from shared.http import FieldProblem, http_error, json_body
from shared.telemetry import get_logger
from shared.tiers import NeedsRecall

log = get_logger(__name__)
Emit = Callable[[Event, str], Awaitable[None]]
"""Sends one event with its id and waits for the broker's acknowledgement."""
Clock = Callable[[], datetime]
E = TypeVar("E", AccessDecided, AccessRevoked)
B = TypeVar("B", DecisionBody, RevocationBody)

READERS = (Role.CLINICIAN, Role.DATA_STEWARD, Role.OPERATOR)
"""Who reads what concerns them: clinicians their requests, stewards their inbox, NGC's operators all."""
REFUSED_BODY = refusal("The body is refused: no purpose, a CPR number somewhere, a field wrong.")
NOT_FOUND = refusal("No such request visible to this token.")
CONFLICT = refusal("The request is decided already, or not a grant that can be revoked.")
NOT_YOURS = refusal("The token may not do this to this request (logged).")


class DiscoveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patient: Pseudonym = Field(description="The national patient pseudonym.")
    case_reference: TypedText = Field(min_length=1, max_length=128, description="Why: the case.")


class RequestPath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: RequestId


class ObjectPath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    object_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The DRS object id.")


class AccessPath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    object_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The DRS object id.")
    access_id: RequestId = Field(description="An access method's id: the grant.")


class TicketPath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket: str = Field(min_length=8, max_length=1024, description="The signed ticket DRS handed out.")


class HtsgetQuery(BaseModel):
    """htsget 1.3's query (``fields``, ``tags`` and ``notags`` are not offered: a slice is cut
    from whole containers and blocks, never re-encoded, so it keeps every field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str | None = Field(
        default=None, description="CRAM for reads, VCF for variants: what is archived."
    )
    reference_name: str | None = Field(
        default=None,
        alias="referenceName",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.*:|+-]+$",
        description="The reference, as the file's header names it; `*` for unplaced reads.",
    )
    start: int | None = Field(default=None, ge=0, le=2**31, description="0-based, inclusive.")
    end: int | None = Field(default=None, ge=0, le=2**31, description="0-based, exclusive.")
    part: Literal["header"] | None = Field(
        default=None, alias="class", description="`header`: the file's header alone."
    )


class HtsgetUrl(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    url: str = Field(description="Opens for minutes, for this grant and slice only; no token needed.")
    class_: Literal["header", "body"] | None = Field(default=None, alias="class", serialization_alias="class")


class HtsgetTicketBody(BaseModel):
    format: str
    urls: list[HtsgetUrl]


class HtsgetTicket(BaseModel):
    """htsget 1.3's ticket. Its one URL gives the slice as a Crypt4GH file encrypted to the
    department's registered key: what `crypt4gh decrypt` makes of it is the CRAM or VCF."""

    htsget: HtsgetTicketBody


HTSGET_FORMATS = {"reads": ("CRAM", Deliverable.HARMONISED_CRAM, ".cram", ".crai"),
                  "variants": ("VCF", Deliverable.HARMONISED_VCF, ".vcf.gz", ".tbi")}  # fmt: skip
"""What each htsget endpoint serves of the archive: format, deliverable, file and index suffix."""


def _locus(asked: HtsgetQuery) -> GenomicRange | None:
    """The range of an htsget query (None: the whole file's header, for ``class=header``),
    or the 400 htsget gives for one that cannot be a range."""
    if asked.reference_name is None:
        if asked.start is not None or asked.end is not None:
            raise http_error(400, "InvalidInput: start and end need a referenceName")
        return None
    if asked.reference_name == UNMAPPED and (asked.start is not None or asked.end is not None):
        raise http_error(400, "InvalidInput: the unplaced reads ('*') have no coordinates")
    if asked.start is not None and asked.end is not None and asked.end <= asked.start:
        raise http_error(400, "InvalidRange: end must lie after start")
    return GenomicRange(reference_name=asked.reference_name, start=asked.start, end=asked.end)


class PassportView(BaseModel):
    """A grant as GA4GH AAI carries it: a Passport holding its ``ControlledAccessGrants``
    visa, both signed by the service (keys at ``/.well-known/jwks.json``)."""

    passport: str = Field(description='A Passport JWT: send it in DRS\'s POST body, `{"passports": [...]}`.')
    visas: list[str] = Field(description="The visa JWTs it carries.")
    expires_at: datetime = Field(description="The grant's end: when the visa and the Passport expire.")


class ServiceType(BaseModel):
    group: str
    artifact: str
    version: str


class Organization(BaseModel):
    name: str
    url: str


class ServiceInfo(BaseModel):
    """GA4GH service-info, as DRS serves it at ``/ga4gh/drs/v1/service-info``."""

    id: str
    name: str
    type: ServiceType
    description: str
    organization: Organization
    version: str


DRS_SERVICE = ServiceInfo(
    id="dk.ngc.genomhub.drs",
    name="genomhub DRS",
    type=ServiceType(group="org.ga4gh", artifact="drs", version="1.4.0"),
    description=(
        "Working copies of the National Genome Database's files for patient treatment, under the owning "
        "region's grant: each a Crypt4GH file encrypted to the requesting department's key."
    ),
    organization=Organization(name="Danish National Genome Center", url="https://www.ngc.dk"),
    version=metadata.version("genomhub"),
)


class NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestView(BaseModel):
    request: AccessRequested
    standing: str = Field(description="pending, granted, denied, revoked or expired: now.")
    decision: AccessDecided | None = None
    revocation: AccessRevoked | None = None


class RequestList(BaseModel):
    requests: list[RequestView]


class RequestObjects(BaseModel):
    """The files a request covers (its samples, the deliverables it wants), as DRS objects;
    each has the request as its access method while the request is a grant in force to the
    caller's region, so a grantee finds what to fetch without knowing the archive's names."""

    objects: list[DrsObject]


class DepartmentKeyView(BaseModel):
    region: Region
    department: str
    public_key: str = Field(description="The Crypt4GH public key file's text.")
    fingerprint: str = Field(description="sha256 of the 32 key bytes, hex: to compare by voice.")
    registered_by: str
    registered_at: datetime


class DepartmentKeyList(BaseModel):
    keys: list[DepartmentKeyView]


def _key_view(key: DepartmentKey) -> DepartmentKeyView:
    return DepartmentKeyView(
        region=key.region,
        department=key.department,
        public_key=public_key_text(key.public_key),
        fingerprint=hashlib.sha256(key.public_key).hexdigest(),
        registered_by=key.registered_by,
        registered_at=key.registered_at,
    )


class LedgerEntryView(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    request_id: str | None
    case_reference: str
    concerns: list[str]
    detail: dict[str, Any]
    prev_sha256: str
    sha256: str


class LedgerSlice(BaseModel):
    entries: list[LedgerEntryView]


def _view(record: RequestRecord, at: datetime) -> RequestView:
    return RequestView(
        request=record.request,
        standing=record.standing(at).value,
        decision=record.decision,
        revocation=record.revocation,
    )


def _change_answers(done: str) -> dict[int, Answer]:
    """The answers of a change to a request: a decision or a revocation."""
    return {201: answer(done, RequestView), 403: NOT_YOURS, 404: NOT_FOUND, 409: CONFLICT, 422: REFUSED_BODY}


def _about(asked: AccessRequested, principal: Principal, action: str, detail: dict[str, Any]) -> Audit:
    """The ledger entry of ``principal``'s ``action`` on a request: it concerns the owner's
    data and the requester's request, so both regions read it."""
    return Audit(
        actor=principal.name,
        action=action,
        concerns=(asked.owner.value, asked.requester.region.value),
        detail=detail,
        case_reference=asked.case_reference,
        request_id=asked.request_id,
    )


HTSGET_ANSWERS = {
    200: answer(
        "The ticket: one URL giving the slice, Crypt4GH encrypted to the department's key.", HtsgetTicket
    ),
    202: answer(
        "The file or its index is on tape: its recall is under way; the same request succeeds "
        "once it is staged. Retry-After says when, from the archive's estimate.",
        RecallWait,
    ),
    400: refusal("InvalidInput, InvalidRange or UnsupportedFormat (htsget's error object)."),
    403: refusal("PermissionDenied: no grant in force, or one that does not cover the range (logged)."),
    404: refusal("NotFound: no such object of this kind, no such reference in the file, or no index."),
}


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _recalling(waiting: RecallUnderWay) -> web.Response:
    """202 with Retry-After (DRS 1.4): no request waits for tape."""
    return web.json_response(
        text=RecallWait.of(waiting).model_dump_json(),
        status=202,
        headers={"Retry-After": str(waiting.retry_after)},
    )


class AccessApi(Api):
    """The access routes over one :class:`AccessStore`, emitting through ``emit``."""

    title = "genomhub access"
    description = (
        "Data out (initiative 5.2): what exists for a patient, requests for a working copy for "
        "patient treatment, the owning region's decisions, revocation, and the audit ledger."
    )

    def __init__(
        self,
        store: AccessStore,
        emit: Emit,
        grant_days: int,
        clock: Clock | None = None,
        delivery: Delivery | None = None,
        passports: Passports | None = None,
    ) -> None:
        self.store = store
        self.passports = passports
        self.emit = emit
        self.grant_days = grant_days
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.delivery = delivery
        self._sending = asyncio.Lock()
        self._downloads: dict[str, set[asyncio.Event]] = {}
        """The downloads in progress under each grant: a revocation here sets their events."""

    async def send_pending(self) -> None:
        """Emit what the outbox holds; what the broker does not take stays for the next try.

        One sender at a time (a handler and the timer may both call this): two would read
        the same unsent events and send each twice."""
        async with self._sending:
            for event_id, event in await asyncio.to_thread(self.store.unemitted):
                try:
                    await self.emit(event, event_id)
                except Exception as exc:  # the broker is away: the timer sends it later
                    log.warning("access event not emitted yet", event=event.event_name, error=str(exc))
                    return
                await asyncio.to_thread(self.store.mark_emitted, event_id)

    async def _refuse(self, principal: Principal, request: AccessRequested, what: str, why: str) -> NoReturn:
        """Log a refused decision or revocation in the ledger, then answer 403."""
        audit = _about(
            request,
            principal,
            Action.REFUSED,
            {"refused": what, "reason": why, "roles": sorted(principal.roles)},
        )
        await asyncio.to_thread(self.store.audit, audit, self.clock())
        raise http_error(403, why)

    async def _asked(
        self,
        request: web.Request,
        check: Callable[[Principal, Region], None],
        what: str,
        model: type[B],
    ) -> tuple[Principal, AccessRequested, B, datetime]:
        """The caller, the request it acts on, its body and the moment, once ``check`` let the
        caller act on the request (else 403, logged) and the body is acceptable (else 422)."""
        principal = principal_of(request)
        asked = (await self._visible(request)).request
        try:
            check(principal, asked.owner)
        except NotAllowed as exc:
            await self._refuse(principal, asked, what, str(exc))
        try:
            body = parse_body(model, await json_body(request))
        except RequestRefused as exc:
            raise http_error(422, f"{what} refused", problems=exc.problems) from None
        return principal, asked, body, self.clock()

    async def _commit(
        self,
        request: web.Request,
        write: Callable[[E, str, Audit, datetime], object],
        event: E,
        audit: Audit,
        now: datetime,
    ) -> web.Response:
        """Record a decision or revocation with its event and ledger entry, emit, answer 201.

        The event's id is derived from the request, so the one decision (or revocation) a
        request can have is one event, however often it is sent."""
        event_id = derive_id(event.request_id, "access", event.ce_type())
        try:
            await asyncio.to_thread(write, event, event_id, audit, now)
        except Conflict as exc:
            raise http_error(409, str(exc)) from None
        await self.send_pending()
        return _json(_view(await self._visible(request), now), status=201)

    async def _visible(self, request: web.Request) -> RequestRecord:
        principal = principal_of(request)
        request_id = path_of(request, RequestPath).request_id
        record = await asyncio.to_thread(self.store.record, request_id)
        if record is None or not may_read_request(
            principal, record.request.owner, record.request.requester.region
        ):
            raise http_error(404, "no such request")
        return record

    @route(
        "GET",
        "/v1/discovery",
        operation_id="discover",
        summary="Whether the national database holds data for a patient, at Beacon v2 granularity.",
        query=DiscoveryQuery,
        roles=READERS,
        responses={
            200: answer("Per region: exists, count, analysis types, months.", discovery.DiscoveryAnswer),
            422: refusal("No patient or case reference, or one the service refuses."),
        },
    )
    async def discover(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        asked = query_of(request, DiscoveryQuery)
        found = await asyncio.to_thread(self.store.samples_of_patient, asked.patient)
        said = discovery.answer(found, principal.region)
        audit = Audit(
            actor=principal.name,
            action=Action.DISCOVERY,
            concerns=[h.region.value for h in said.regions] + ([principal.name] if principal.region else []),
            detail={"patient": asked.patient, "answered": discovery.summary(said)},
            case_reference=asked.case_reference,
        )
        await asyncio.to_thread(self.store.audit, audit, self.clock())
        return _json(said)

    @route(
        "POST",
        "/v1/access/requests",
        operation_id="requestAccess",
        summary="Request a working copy for patient treatment.",
        body={"application/json": AccessRequestBody},
        roles=(Role.CLINICIAN,),
        responses={201: answer("Requested: access-requested is emitted.", RequestView), 422: REFUSED_BODY},
    )
    async def create(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if principal.region is None:
            raise http_error(403, "a request is made by a region's clinician, not by NGC")
        try:
            body = parse_body(AccessRequestBody, await json_body(request))
        except RequestRefused as exc:
            raise http_error(422, "request refused", problems=exc.problems) from None
        if body.patient is not None:
            known = await asyncio.to_thread(self.store.samples_of_patient, body.patient, body.owner)
        else:
            known = await asyncio.to_thread(self.store.samples_named, body.owner, body.samples)
        wanted = sorted({s.sample_id for s in known if s.accepted})
        missing = sorted(set(body.samples) - set(wanted))
        if not wanted or missing:
            problem = FieldProblem(
                field="samples" if body.samples else "patient",
                message=f"{body.owner.value} holds no accepted sample of that name"
                + (f" ({len(missing)} not found)" if missing else ""),
            )
            raise http_error(422, "request refused", problems=[problem])
        now = self.clock()
        event = AccessRequested(
            request_id=new_request_id(),
            owner=body.owner,
            requester=Requester(region=principal.region, department=body.department),
            samples=[SampleRef(region=body.owner, sample_id=s) for s in wanted],
            wants=body.wants,
            genomic_ranges=body.genomic_ranges,
            purpose="patient-treatment",
            case_reference=body.case_reference,
            urgency=body.urgency,
            requested_at=now,
        )
        audit = Audit(
            actor=principal.name,
            action=Action.REQUEST,
            concerns=(event.owner.value, principal.name),
            detail={"samples": wanted, "wants": [w.value for w in body.wants], "urgency": body.urgency.value},
            case_reference=body.case_reference,
            request_id=event.request_id,
        )
        await asyncio.to_thread(self.store.create_request, event, new_event_id(), audit, now)
        await self.send_pending()
        record = await asyncio.to_thread(self.store.record, event.request_id)
        assert record is not None
        return _json(_view(record, now), status=201)

    @route(
        "GET",
        "/v1/access/requests",
        operation_id="listRequests",
        summary="The requests the token's region made or owns (the steward's inbox); NGC: all.",
        query=NoParameters,
        roles=READERS,
        responses={200: answer("Newest first, each with its standing now.", RequestList)},
    )
    async def list_requests(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        now = self.clock()
        records = await asyncio.to_thread(self.store.records, principal.region)
        return _json(RequestList(requests=[_view(r, now) for r in records]))

    @route(
        "GET",
        "/v1/access/requests/{request_id}",
        operation_id="getRequest",
        summary="One request and where it stands now (a grant past its end opens nothing).",
        path_parameters=RequestPath,
        roles=READERS,
        responses={200: answer("The request.", RequestView), 404: NOT_FOUND},
    )
    async def get_request(self, request: web.Request) -> web.Response:
        return _json(_view(await self._visible(request), self.clock()))

    @route(
        "GET",
        "/v1/access/requests/{request_id}/objects",
        operation_id="listRequestObjects",
        summary="The DRS objects a request covers; the request is their access method while it is a grant in force.",
        path_parameters=RequestPath,
        roles=READERS,
        responses={
            200: answer("By sample and name (a ledger entry records the read).", RequestObjects),
            404: NOT_FOUND,
        },
    )
    async def request_objects(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        record = await self._visible(request)
        asked, now = record.request, self.clock()
        found = await asyncio.to_thread(
            self.store.objects_of_samples, asked.owner, [s.sample_id for s in asked.samples]
        )
        wanted = [o for o in found if o.deliverable in asked.wants]
        standing = record.standing(now)
        listed = [
            drs_object(
                o,
                request.host,
                [asked.request_id]
                if principal.region is not None
                and opens(asked, standing, principal.region, (o.region, o.sample_id), o.deliverable)
                else [],
            )
            for o in wanted
        ]
        read = _about(asked, principal, Action.READ, {"drs_objects": [o.object_id for o in wanted]})
        await asyncio.to_thread(self.store.audit, read, now)
        return _json(RequestObjects(objects=listed))

    @route(
        "POST",
        "/v1/access/requests/{request_id}/decision",
        operation_id="decideRequest",
        summary="The owning region's data steward grants (for the configured days) or denies.",
        path_parameters=RequestPath,
        body={"application/json": DecisionBody},
        roles=(Role.DATA_STEWARD,),
        responses=_change_answers("Decided: access-decided is emitted."),
    )
    async def decide(self, request: web.Request) -> web.Response:
        principal, asked, body, now = await self._asked(request, check_decider, "decision", DecisionBody)
        event = AccessDecided(
            request_id=asked.request_id,
            owner=asked.owner,
            granted=body.grant,
            decided_by=asked.owner,
            reason=body.reason,
            decided_at=now,
            valid_until=grant_end(now, self.grant_days) if body.grant else None,
        )
        ends = None if event.valid_until is None else event.valid_until.isoformat()
        detail = {"granted": body.grant, "reason": body.reason, "valid_until": ends}
        audit = _about(asked, principal, Action.DECISION, detail)
        return await self._commit(request, self.store.decide, event, audit, now)

    @route(
        "POST",
        "/v1/access/requests/{request_id}/revocation",
        operation_id="revokeGrant",
        summary="Revoke a grant at once: the owner's data steward, or NGC's operator in an emergency.",
        path_parameters=RequestPath,
        body={"application/json": RevocationBody},
        roles=(Role.DATA_STEWARD, Role.OPERATOR),
        responses=_change_answers("Revoked: access-revoked is emitted."),
    )
    async def revoke(self, request: web.Request) -> web.Response:
        principal, asked, body, now = await self._asked(request, check_revoker, "revocation", RevocationBody)
        event = AccessRevoked(
            request_id=asked.request_id,
            owner=asked.owner,
            revoked_by=principal.region or "ngc",
            reason=body.reason,
            revoked_at=now,
        )
        audit = _about(asked, principal, Action.REVOCATION, {"reason": body.reason})
        answered = await self._commit(request, self.store.revoke, event, audit, now)
        for cut in self._downloads.get(asked.request_id, set()):
            cut.set()
        return answered

    @route(
        "POST",
        "/v1/access/department-keys",
        operation_id="registerDepartmentKey",
        summary="Register (or replace) a department's Crypt4GH public key: its region's data steward or NGC's operator.",
        body={"application/json": DepartmentKeyBody},
        roles=(Role.DATA_STEWARD, Role.OPERATOR),
        responses={
            201: answer("Registered; a ledger entry records it.", DepartmentKeyView),
            403: refusal("Another region's department (logged)."),
            422: refusal("Not a Crypt4GH public key, or a field wrong."),
        },
    )
    async def register_key(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        try:
            body = parse_body(DepartmentKeyBody, await json_body(request))
        except RequestRefused as exc:
            raise http_error(422, "department key refused", problems=exc.problems) from None
        now = self.clock()
        fingerprint = hashlib.sha256(body.key_bytes).hexdigest()
        about = {"region": body.region.value, "department": body.department, "fingerprint": fingerprint}
        try:
            check_key_registrar(principal, body.region)
        except NotAllowed as exc:
            refused = Audit(
                actor=principal.name,
                action=Action.REFUSED,
                concerns=(body.region.value, principal.name),
                detail={"refused": "department-key", "reason": str(exc), **about},
            )
            await asyncio.to_thread(self.store.audit, refused, now)
            raise http_error(403, str(exc)) from None
        key = DepartmentKey(body.region, body.department, body.key_bytes, principal.name, now)
        audit = Audit(
            actor=principal.name, action=Action.DEPARTMENT_KEY, concerns=(body.region.value,), detail=about
        )
        await asyncio.to_thread(self.store.register_key, key, audit)
        return _json(_key_view(key), status=201)

    @route(
        "GET",
        "/v1/access/requests/{request_id}/passport",
        operation_id="getRequestPassport",
        summary="The grant as a GA4GH Passport with its ControlledAccessGrants visa, for DRS's POST.",
        path_parameters=RequestPath,
        roles=(Role.CLINICIAN,),
        responses={
            200: answer(
                "Signed until the grant's end; checked against the grant at every use.", PassportView
            ),
            404: NOT_FOUND,
            409: refusal("The request is not a grant in force to the caller's region."),
        },
    )
    async def request_passport(self, request: web.Request) -> web.Response:
        if self.passports is None:
            raise http_error(503, "this access service issues no Passports")
        principal = principal_of(request)
        record = await self._visible(request)
        now = self.clock()
        asked = record.request
        if record.standing(now) is not Standing.GRANTED or asked.requester.region != principal.region:
            raise http_error(409, "not a grant in force to your region: no visa")
        assert record.decision is not None and record.decision.valid_until is not None
        expires = record.decision.valid_until
        issued = visa(
            self.passports.key,
            self.passports.issuer,
            subject=principal.name,
            request_id=asked.request_id,
            owner=asked.owner.value,
            asserted=record.decision.decided_at,
            expires=expires,
            now=now,
        )
        signed = passport(
            self.passports.key,
            self.passports.issuer,
            subject=principal.name,
            visas=[issued],
            expires=expires,
            now=now,
        )
        audit = _about(
            asked,
            principal,
            Action.PASSPORT,
            {"visa": "ControlledAccessGrants", "expires_at": expires.isoformat()},
        )
        await asyncio.to_thread(self.store.audit, audit, now)
        return _json(PassportView(passport=signed, visas=[issued], expires_at=expires))

    @route(
        "GET",
        "/.well-known/jwks.json",
        operation_id="getJwks",
        summary="The public keys of the service's visas and Passports (a JSON Web Key Set).",
        public=True,
        responses={200: answer("The key set.", {"type": "object"})},
    )
    async def jwks(self, request: web.Request) -> web.Response:
        if self.passports is None:
            raise http_error(404, "this access service issues no Passports")
        return web.json_response(self.passports.key.jwks())

    @route(
        "GET",
        "/v1/access/department-keys",
        operation_id="listDepartmentKeys",
        summary="The registered department keys of the token's region; NGC: every region's.",
        query=NoParameters,
        roles=READERS,
        responses={200: answer("By region and department.", DepartmentKeyList)},
    )
    async def list_keys(self, request: web.Request) -> web.Response:
        keys = await asyncio.to_thread(self.store.department_keys, principal_of(request).region)
        return _json(DepartmentKeyList(keys=[_key_view(k) for k in keys]))

    @route(
        "GET",
        "/v1/audit",
        operation_id="readAudit",
        summary="The ledger entries about the token's region's data and requests; NGC: all.",
        query=NoParameters,
        roles=(Role.DATA_STEWARD, Role.OPERATOR),
        responses={200: answer("Entries in chain order.", LedgerSlice)},
    )
    async def audit(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        entries = await asyncio.to_thread(self.store.entries, principal.region)
        views = [
            LedgerEntryView(**{**e.__dict__, "concerns": list(e.concerns), "detail": dict(e.detail)})
            for e in entries
        ]
        return _json(LedgerSlice(entries=views))

    async def _grants_for(self, principal: Principal, found: ArchivedObject, now: datetime) -> list[str]:
        """The requests of the caller's region whose grant, in force now, opens ``found``."""
        if principal.region is None:
            return []
        records = await asyncio.to_thread(self.store.records, principal.region)
        sample = (found.region, found.sample_id)
        return [
            r.request.request_id
            for r in records
            if opens(r.request, r.standing(now), principal.region, sample, found.deliverable)
        ]

    async def _refuse_object(
        self, principal: Principal, found: ArchivedObject, what: str, why: str
    ) -> NoReturn:
        refused = Audit(
            actor=principal.name,
            action=Action.REFUSED,
            concerns=(found.region.value, principal.name),
            detail={"refused": what, "object_id": found.object_id, "reason": why},
        )
        await asyncio.to_thread(self.store.audit, refused, self.clock())
        raise http_error(403, f"PermissionDenied: {why}")

    async def _object(self, object_id: str) -> ArchivedObject:
        found = await asyncio.to_thread(self.store.archived_object, object_id)
        if found is None:
            raise http_error(404, "no such object")
        return found

    @route(
        "GET",
        "/ga4gh/drs/v1/service-info",
        operation_id="GetServiceInfo",
        summary="GA4GH service-info of the DRS endpoint: what it is, who runs it, which DRS it speaks.",
        public=True,
        ga4gh="drs",
        responses={200: answer("The service.", ServiceInfo)},
    )
    async def drs_service_info(self, request: web.Request) -> web.Response:
        return _json(DRS_SERVICE)

    @route(
        "GET",
        "/ga4gh/drs/v1/objects/{object_id}",
        operation_id="GetObject",
        summary="GA4GH DRS 1.4 object metadata (size, sha-256): the owner, NGC, or a grant in force.",
        path_parameters=ObjectPath,
        roles=READERS,
        ga4gh="drs",
        responses={
            200: answer("The object; access methods for a caller with a grant in force.", DrsObject),
            403: refusal("PermissionDenied: no grant in force names this object's sample and kind (logged)."),
            404: refusal("No such object."),
        },
    )
    async def drs_object(self, request: web.Request) -> web.Response:
        found = await self._object(path_of(request, ObjectPath).object_id)
        return await self._drs_object(request, principal_of(request), found, None)

    @route(
        "POST",
        "/ga4gh/drs/v1/objects/{object_id}",
        operation_id="PostObject",
        summary="GA4GH DRS 1.4 object metadata for the bearer of GA4GH Passports (no token): the grants their visas claim.",
        path_parameters=ObjectPath,
        body={"application/json": PassportsBody},
        public=True,
        ga4gh="drs",
        responses={
            200: answer(
                "The object, with an access method for each grant in force a visa claims.", DrsObject
            ),
            401: refusal("No Passport, or one that is not this service's, malformed or expired."),
            403: refusal("PermissionDenied: no visa's grant in force names this object (logged)."),
            404: refusal("No such object."),
        },
    )
    async def drs_object_by_passport(self, request: web.Request) -> web.Response:
        found = await self._object(path_of(request, ObjectPath).object_id)
        principal, claimed = await self._passport_holder(request)
        return await self._drs_object(request, principal, found, claimed)

    async def _drs_object(
        self, request: web.Request, principal: Principal, found: ArchivedObject, claimed: set[str] | None
    ) -> web.Response:
        """The object as ``principal`` may see it; with ``claimed`` (a Passport's grants) only
        those grants open it, and its metadata too."""
        now = self.clock()
        grants = await self._grants_for(principal, found, now)
        if claimed is not None:
            grants = [g for g in grants if g in claimed]
        if (
            (principal.region is not None and principal.region != found.region) or claimed is not None
        ) and not grants:
            await self._refuse_object(principal, found, "drs-object", "no grant in force names this object")
        read = Audit(
            actor=principal.name,
            action=Action.READ,
            concerns=(found.region.value, *([principal.name] if principal.region else [])),
            detail={"drs_object": found.object_id, "deliverable": found.deliverable.value},
            request_id=grants[0] if grants else None,
        )
        await asyncio.to_thread(self.store.audit, read, now)
        return _json(drs_object(found, request.host, grants))

    async def _passport_holder(self, request: web.Request) -> tuple[Principal, set[str]]:
        """Who a DRS POST's Passports say the caller is, and the grants their visas claim
        (each Passport and visa verified against the service's own key); 401 otherwise."""
        if self.passports is None:
            raise http_error(401, "this access service takes no Passports")
        try:
            body = parse_passports(await json_body(request))
        except RequestRefused as exc:
            raise http_error(422, "passports refused", problems=exc.problems) from None
        try:
            claims = grants_in(self.passports.key, self.passports.issuer, list(body.passports), self.clock())
        except PassportRefused as exc:
            raise http_error(401, f"the Passport is refused: {exc}") from None
        subjects = {c.subject for c in claims}
        if len(subjects) != 1 or next(iter(subjects)) not in {r.value for r in Region}:
            raise http_error(401, "the Passports claim no grant of one region")
        return Principal(subjects.pop(), frozenset({Role.CLINICIAN})), {c.request_id for c in claims}

    @route(
        "GET",
        "/ga4gh/drs/v1/objects/{object_id}/access/{access_id}",
        operation_id="GetAccessURL",
        summary="A short-lived URL of the working copy, Crypt4GH encrypted to the department's key.",
        path_parameters=AccessPath,
        roles=(Role.CLINICIAN,),
        ga4gh="drs",
        responses={
            200: answer("The URL; it opens for minutes, for this grant and object only.", AccessUrl),
            202: answer(
                "The file is on tape: its recall is under way (started or joined); the same request "
                "succeeds once it is staged. Retry-After says when, from the archive's estimate.",
                RecallWait,
            ),
            403: refusal(
                "PermissionDenied: the grant is not in force, not the caller's, or its "
                "department has no registered key (logged)."
            ),
            404: refusal("No such object."),
        },
    )
    async def access_url(self, request: web.Request) -> web.Response:
        return await self._access_url(request, principal_of(request), path_of(request, AccessPath), None)

    @route(
        "POST",
        "/ga4gh/drs/v1/objects/{object_id}/access/{access_id}",
        operation_id="PostAccessURL",
        summary="The working copy's short-lived URL for the bearer of GA4GH Passports (no token) whose visa claims the grant.",
        path_parameters=AccessPath,
        body={"application/json": PassportsBody},
        public=True,
        ga4gh="drs",
        responses={
            200: answer("The URL; it opens for minutes, for this grant and object only.", AccessUrl),
            202: answer("The file is on tape: its recall is under way (see the GET).", RecallWait),
            401: refusal("No Passport, or one that is not this service's, malformed or expired."),
            403: refusal("PermissionDenied: no visa claims that grant, or it is not in force (logged)."),
            404: refusal("No such object."),
        },
    )
    async def access_url_by_passport(self, request: web.Request) -> web.Response:
        principal, claimed = await self._passport_holder(request)
        return await self._access_url(request, principal, path_of(request, AccessPath), claimed)

    async def _access_url(
        self, request: web.Request, principal: Principal, wanted: AccessPath, claimed: set[str] | None
    ) -> web.Response:
        found = await self._object(wanted.object_id)
        now = self.clock()
        if claimed is not None and wanted.access_id not in claimed:
            await self._refuse_object(principal, found, "access-url", "no visa claims that access id")
        if wanted.access_id not in await self._grants_for(principal, found, now):
            await self._refuse_object(principal, found, "access-url", "no grant in force by that access id")
        record = await asyncio.to_thread(self.store.record, wanted.access_id)
        assert record is not None
        department = record.request.requester.department
        if (
            await asyncio.to_thread(self.store.department_key, record.request.requester.region, department)
            is None
        ):
            await self._refuse_object(
                principal, found, "access-url", f"department {department!r} has no registered key"
            )
        delivery = self._delivery()
        if delivery.tiers is not None:
            waiting = await asyncio.to_thread(
                availability,
                found,
                delivery.tiers,
                self.store,
                now,
                f"access: working copy {wanted.access_id}",
            )
            if isinstance(waiting, RecallUnderWay):
                await self.send_pending()
                return _recalling(waiting)
        ticket = tickets.issue(
            wanted.access_id, found.object_id, principal.name, now, delivery.url_minutes, delivery.url_secret
        )
        return _json(AccessUrl(url=f"{request.url.origin()}/v1/working-copies/{ticket}"))

    async def _index_of(self, found: ArchivedObject, suffix: str) -> ArchivedObject:
        index = await asyncio.to_thread(
            self.store.archived_object, object_id_of(found.region, found.sample_id, found.name + suffix)
        )
        if index is None:
            raise http_error(404, "NotFound: the file has no index to cut a slice by")
        return index

    async def _cut(
        self,
        found: ArchivedObject,
        index: ArchivedObject,
        locus: GenomicRange | None,
        delivery: Delivery,
        recipient: bytes,
    ) -> Slice:
        """The open slice of ``found`` holding ``locus`` (None: its header), or the htsget
        error of a range the file cannot give, or a 503 for an archive that cannot be read."""
        try:
            return await asyncio.to_thread(slice_of, found, index, locus, delivery, recipient)
        except SliceRefused as exc:
            raise http_error(404 if exc.code == "NotFound" else 400, f"{exc.code}: {exc}") from None
        except NeedsRecall as exc:  # went to tape after its URL was handed out: ask again
            raise http_error(503, f"{exc}; ask for the slice's ticket again") from None
        except (UnreadableIndex, EncryptionError, MissingHeader, OSError) as exc:
            log.error("htsget slice cannot be cut", object_id=found.object_id, error=str(exc))
            raise http_error(
                503, "the archived file or its index cannot be read now; nothing was sent"
            ) from None

    async def _htsget(self, request: web.Request, endpoint: str) -> web.Response:
        """The ticket of an htsget slice (reads or variants) of an object a grant in force opens."""
        principal = principal_of(request)
        asked = query_of(request, HtsgetQuery)
        fmt, deliverable, suffix, index_suffix = HTSGET_FORMATS[endpoint]
        found = await self._object(path_of(request, ObjectPath).object_id)
        if found.deliverable is not deliverable or not found.name.endswith(suffix):
            raise http_error(404, f"NotFound: no {endpoint} by that id")
        if asked.format is not None and asked.format != fmt:
            raise http_error(400, f"UnsupportedFormat: the archive holds {endpoint} as {fmt}")
        wanted = _locus(asked)
        now = self.clock()
        grants = await self._grants_for(principal, found, now)
        if not grants:
            await self._refuse_object(principal, found, "htsget", "no grant in force names this object")
        # htsget's three asks: the header alone (whatever range is named), the whole file (no
        # referenceName), a range.
        part = "header" if asked.part == "header" else "whole-file" if wanted is None else "slice"
        if part == "header":
            wanted = None
        records = [await asyncio.to_thread(self.store.record, g) for g in grants]
        covering = [
            r
            for r in records
            if r is not None and (part == "header" or covers(r.request.genomic_ranges, wanted))
        ]
        if not covering:
            await self._refuse_object(principal, found, "htsget", "the grant does not cover that range")
        record = covering[0]
        department = record.request.requester.department
        key = await asyncio.to_thread(self.store.department_key, record.request.requester.region, department)
        if key is None:
            await self._refuse_object(
                principal, found, "htsget", f"department {department!r} has no registered key"
            )
        index = await self._index_of(found, index_suffix)
        delivery = self._delivery()
        if delivery.tiers is not None:
            for needed in (found, index):
                waiting = await asyncio.to_thread(
                    availability, needed, delivery.tiers, self.store, now,
                    f"access: htsget slice {record.request.request_id}",
                )  # fmt: skip
                if isinstance(waiting, RecallUnderWay):
                    await self.send_pending()
                    return _recalling(waiting)
        if part != "whole-file":  # cut once now: a range the file cannot give is refused here
            cut = await self._cut(found, index, wanted, delivery, key.public_key)
            await asyncio.to_thread(cut.close)
        ticket = tickets.issue(
            record.request.request_id,
            found.object_id,
            principal.name,
            now,
            delivery.url_minutes,
            delivery.url_secret,
            part=part,
            locus=None if wanted is None else wanted.model_dump(),
        )
        url = HtsgetUrl(url=f"{request.url.origin()}/v1/working-copies/{ticket}", class_=asked.part)
        return web.json_response(
            text=HtsgetTicket(htsget=HtsgetTicketBody(format=fmt, urls=[url])).model_dump_json(
                by_alias=True, exclude_none=True
            )
        )

    @route(
        "GET",
        "/ga4gh/htsget/v1/reads/{object_id}",
        operation_id="searchReads",
        summary="htsget 1.3: a ticket for a genomic range of an archived CRAM, under a grant in force.",
        path_parameters=ObjectPath,
        query=HtsgetQuery,
        query_refused=400,
        roles=(Role.CLINICIAN,),
        ga4gh="htsget",
        responses=HTSGET_ANSWERS,
    )
    async def htsget_reads(self, request: web.Request) -> web.Response:
        return await self._htsget(request, "reads")

    @route(
        "GET",
        "/ga4gh/htsget/v1/variants/{object_id}",
        operation_id="searchVariants",
        summary="htsget 1.3: a ticket for a genomic range of an archived VCF, under a grant in force.",
        path_parameters=ObjectPath,
        query=HtsgetQuery,
        query_refused=400,
        roles=(Role.CLINICIAN,),
        ga4gh="htsget",
        responses=HTSGET_ANSWERS,
    )
    async def htsget_variants(self, request: web.Request) -> web.Response:
        return await self._htsget(request, "variants")

    def _delivery(self) -> Delivery:
        if self.delivery is None:
            raise http_error(503, "this access service hands out no working copies (no archive configured)")
        return self.delivery

    @route(
        "GET",
        "/v1/working-copies/{ticket}",
        operation_id="downloadWorkingCopy",
        summary="The working copy's bytes: a Crypt4GH file the department's secret key opens.",
        path_parameters=TicketPath,
        public=True,
        responses={
            200: Answer(
                "The header re-encrypted to the department's key, then the archived body as "
                "stored; cut short if the grant is revoked or ends mid-download.",
                {"application/octet-stream": {"type": "string", "format": "binary"}},
            ),
            403: refusal(
                "The URL is not the service's, has expired, or its grant is no longer in force (logged)."
            ),
            404: refusal("No such object or request."),
            503: refusal("The archive's key or a file's header cannot be read now."),
        },
    )
    async def working_copy(self, request: web.Request) -> web.StreamResponse:
        delivery = self._delivery()
        now = self.clock()
        try:
            ticket = tickets.check(path_of(request, TicketPath).ticket, delivery.url_secret, now)
        except tickets.BadTicket as exc:
            raise http_error(403, f"PermissionDenied: {exc}") from None
        found = await self._object(ticket.object_id)
        record = await asyncio.to_thread(self.store.record, ticket.request_id)
        if record is None:
            raise http_error(404, "no such request")
        asked = record.request
        principal = Principal(ticket.requester)
        if ticket.request_id not in await self._grants_for(principal, found, now):
            await self._refuse_object(principal, found, "working-copy", "the grant is no longer in force")
        key = await asyncio.to_thread(
            self.store.department_key, asked.requester.region, asked.requester.department
        )
        if key is None:
            await self._refuse_object(
                principal, found, "working-copy", "the department has no registered key"
            )
        copy: WholeFile | Slice
        if ticket.part == "whole-file":
            try:
                copy = await asyncio.to_thread(whole_file, found, delivery, key.public_key)
            except NeedsRecall as exc:  # went to tape after its URL was handed out: ask DRS again
                raise http_error(503, f"{exc}; ask for the object's access URL again") from None
            except (EncryptionError, MissingHeader, OSError) as exc:
                log.error("working copy cannot be opened", object_id=found.object_id, error=str(exc))
                raise http_error(503, "the archived file cannot be read now; nothing was sent") from None
        else:
            locus = None if ticket.locus is None else GenomicRange.model_validate(ticket.locus)
            index_suffix = ".crai" if found.deliverable is Deliverable.HARMONISED_CRAM else ".tbi"
            index = await self._index_of(found, index_suffix)
            copy = await self._cut(found, index, locus, delivery, key.public_key)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(copy.size),
                "Content-Disposition": f'attachment; filename="{found.name}.c4gh"',
            }
        )
        cut = asyncio.Event()
        self._downloads.setdefault(asked.request_id, set()).add(cut)
        digest, sent, ended = hashlib.sha256(), 0, "complete"
        try:
            await response.prepare(request)
            ended, sent = await self._send(response, copy, cut, record, found, principal, digest)
        finally:
            self._downloads[asked.request_id].discard(cut)
            await asyncio.to_thread(copy.close)
            await self._issued(
                asked,
                found,
                principal,
                key.public_key,
                sent,
                digest.hexdigest(),
                ended,
                copy.part,
                ticket.locus,
            )
        if ended != "complete" and request.transport is not None:
            request.transport.close()  # the client sees a body shorter than Content-Length
            return response
        await response.write_eof()
        return response

    async def _send(
        self,
        response: web.StreamResponse,
        copy: WholeFile | Slice,
        cut: asyncio.Event,
        record: RequestRecord,
        found: ArchivedObject,
        principal: Principal,
        digest: Any,
    ) -> tuple[str, int]:
        """Send the copy; how it ended ("complete", or why not) and the bytes that went out.

        The batches are read and checked ahead by a thread (:class:`ReadAhead`) while the
        loop writes them and hashes what went out, so tag checks and sha-256 take a core each.
        """
        loop = asyncio.get_running_loop()
        await response.write(copy.header)
        digest.update(copy.header)
        sent = len(copy.header)
        ahead = ReadAhead(copy.batches())
        looked = loop.time()
        try:
            while True:
                if cut.is_set():
                    return "revoked during the download", sent
                if loop.time() - looked >= GRANT_RECHECK_SECONDS:
                    looked = loop.time()
                    if record.request.request_id not in await self._grants_for(
                        principal, found, self.clock()
                    ):
                        return "the grant ended during the download", sent
                try:
                    batch = await ahead.next()
                except EncryptionError as exc:
                    log.error(
                        "working copy stopped: the body fails its check",
                        object_id=found.object_id,
                        error=str(exc),
                    )
                    return f"stopped: {exc}", sent
                if batch is None:
                    return "complete", sent
                try:
                    await response.write(batch)
                except ConnectionError:  # the client went away: an incomplete copy, no error
                    return "the client closed the connection", sent
                digest.update(batch)
                sent += len(batch)
        finally:
            await ahead.close()  # the body closes only once no thread reads it

    async def _issued(
        self,
        asked: AccessRequested,
        found: ArchivedObject,
        principal: Principal,
        recipient: bytes,
        sent: int,
        sha256: str,
        ended: str,
        part: Literal["whole-file", "slice"],
        locus: dict[str, Any] | None,
    ) -> None:
        """The delivery's event (working-copy-issued) and ledger entry, however it ended."""
        now = self.clock()
        event = WorkingCopyIssued(
            request_id=asked.request_id,
            owner=asked.owner,
            object_id=found.object_id,
            sample=SampleRef(region=found.region, sample_id=found.sample_id),
            requester=asked.requester,
            part=part,
            recipient_key_sha256=hashlib.sha256(recipient).hexdigest(),
            bytes_sent=sent,
            sha256=sha256,
            complete=ended == "complete",
            issued_at=now,
        )
        detail = {
            "object_id": found.object_id,
            "name": found.name,
            "bytes_sent": sent,
            "sha256": sha256,
            "ended": ended,
            "department": asked.requester.department,
            **({"part": part, "range": locus} if part == "slice" else {}),
        }
        audit = _about(asked, principal, Action.DELIVERY, detail)
        await asyncio.to_thread(self.store.issue, event, new_event_id(), audit, now)
        await self.send_pending()


def install(app: web.Application, api: AccessApi, tokens: Tokens) -> None:
    """The access routes, their token check and their document on ``app``."""
    api.install(app, tokens)


document = AccessApi.document
