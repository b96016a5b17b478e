"""The receiver's HTTP API: open a submission, stream its files in, seal it.

Routes (every one behind the shared bearer-token middleware; a region acts only for itself,
``ngc`` for all):

    POST /v1/submissions                       metadata -> submission id (201; 200 on a replay
                                               with the same Idempotency-Key)
    GET  /v1/submissions/{id}                  what has arrived
    HEAD /v1/submissions/{id}/files/{name}     Upload-Offset, Upload-Complete (?1 / ?0)
    PUT  /v1/submissions/{id}/files/{name}     the bytes; Upload-Offset or Content-Range resumes
    POST /v1/submissions/{id}/register         copy files from the region's inbox URL
    POST /v1/submissions/{id}/seal             all files complete -> one file-received event (a
                                               later seal answers the same and emits nothing)
    GET  /openapi.json                         the OpenAPI 3.1 document (public)

Another region's submission is answered as an unknown one (404, the same body), and every
error in the one body of ``shared.http``.

Each submission is one trace: POST opens a span whose context is stored with the submission,
and every PUT, register and seal continues it, so the event the seal emits carries the trace
the upload started.

Every answer of these routes is counted by operation (the route's name) and outcome
(``shared.metrics.RequestOutcome``) in ``genomhub_receiver_requests_total``, a 401 from the
token check included; the bytes taken in and the bodies being read are counted too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from pydantic import BaseModel, ConfigDict, Field

from services.receiver import archive
from services.receiver.archive import Layout, OffsetMismatch, Transit
from services.receiver.metadata import (
    MetadataError,
    NewSubmission,
    file_name_problem,
    parse_registration,
    parse_submission,
)
from services.receiver.ranges import BadRange, placement
from services.receiver.state import (
    FileState,
    IdempotencyKeyReused,
    SubmissionState,
    SubmissionStore,
)
from shared import telemetry
from shared.api import Answer, Api, answer, refusal, route
from shared.auth import Tokens, principal_of, require_region
from shared.database import Lease, LeaseHeld, LeaseLost
from shared.encryption import EncryptionError
from shared.envelope import derive_id
from shared.events import FileReceived, StoredFile, new_submission_id
from shared.http import BodyInterrupted, BodyReaders, FieldProblem, Pace, ReadersBusy, http_error, json_body
from shared.metrics import (
    RECEIVER_RECEIVED_BYTES,
    RECEIVER_REQUESTS,
    RECEIVER_UPLOADS_IN_FLIGHT,
    RequestOutcome,
    prepare_receiver,
    request_outcome,
)
from shared.storage import ArchiveWriter, OutsideRoot, SizeLimitExceeded, StoredObject, copy_into

log = telemetry.get_logger(__name__)

Emit = Callable[[FileReceived, str], Awaitable[str]]
NO_STORE = {"Cache-Control": "no-store"}
ISSUED_ID = re.compile(r"[0-9a-f]{32}")
"""The shape of the submission ids the receiver issues (``uuid.uuid4().hex``)."""
SEAL_LOCK = "/seal"
"""The lease name (beside the files' names) that serialises a submission's seals; a file name
cannot contain '/'."""
OUTCOME = web.RequestKey("receiver_outcome", RequestOutcome)
"""A handler's own word on how its request ended, where the status alone does not say."""


@web.middleware
async def count_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count each answer of the API's routes by operation and outcome; other paths are not."""
    operation = request.match_info.route.name
    if operation not in OPERATIONS:
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        outcome = request.get(OUTCOME) or request_outcome(status)
        RECEIVER_REQUESTS.labels(operation, outcome.value).inc()


def error(
    status: int,
    title: str,
    headers: dict[str, str] | None = None,
    field: str | None = None,
    message: str | None = None,
    code: str = "invalid",
    **detail: Any,
) -> web.HTTPException:
    """The shared error answer (:func:`shared.http.http_error`): a refused ``field`` becomes
    its one problem, any other keyword a fact of its ``detail``."""
    problems = [FieldProblem(field=field, code=code, message=message or title)] if field is not None else None
    return http_error(status, title, problems=problems, detail=detail or None, headers=headers)


def metadata_error(exc: MetadataError) -> web.HTTPException:
    """422 naming the refused field; never the value, which may be a CPR number."""
    return error(422, exc.title, field=exc.field, message=exc.message, code=exc.code)


def _unknown(value: object) -> bool:
    return value is None


class FileView(BaseModel):
    """A declared file as the API shows it: where it is and its checksums once complete."""

    name: str
    role: str
    complete: bool
    # A file not yet complete has no url or checksums: they are left out, not null.
    url: str | None = Field(default=None, exclude_if=_unknown)
    size: int | None = Field(default=None, exclude_if=_unknown)
    sha256: str | None = Field(default=None, exclude_if=_unknown)
    md5: str | None = Field(default=None, exclude_if=_unknown)
    deduplicated: bool | None = Field(
        default=None,
        exclude_if=_unknown,
        description="Whether an identical copy of the sample's stood in for the bytes sent.",
    )
    arrived: int | None = Field(
        default=None, exclude_if=_unknown, description="Bytes arrived of a file not yet complete."
    )

    @classmethod
    def of(cls, f: FileState, *, deduplicated: bool | None = None, arrived: int | None = None) -> FileView:
        known = {"url": f.url, "size": f.size, "sha256": f.sha256, "md5": f.md5} if f.complete else {}
        return cls(
            name=f.name,
            role=f.role.value,
            complete=f.complete,
            deduplicated=deduplicated,
            arrived=arrived,
            **known,
        )


class Opened(BaseModel):
    submission_id: str
    trace_id: str | None = Field(description="The trace every later request of the submission continues.")
    files: list[FileView]


class Shown(BaseModel):
    submission_id: str
    region: str
    sample_id: str
    analysis_type: str
    sealed_at: str | None
    event_id: str | None
    files: list[FileView]


class Sealed(BaseModel):
    submission_id: str
    event_id: str
    received_at: str
    files: list[FileView]


class Piece(BaseModel):
    """What a PUT of a piece that does not end the file answers (202)."""

    name: str
    complete: bool
    arrived: int


class Registered(BaseModel):
    submission_id: str
    files: list[FileView]


def json_answer(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``model`` as the answer's body: the documented model is what is sent."""
    return web.json_response(text=model.model_dump_json(), status=status, headers=headers)


def traceparent_now() -> str | None:
    carrier: list[tuple[str, bytes]] = []
    telemetry.inject(carrier)
    value = dict(carrier).get("traceparent")
    return value.decode() if value else None


REFUSED = {
    400: refusal("Malformed: not JSON, a bad range or header."),
    403: refusal("The token's region may not open a submission for the region named."),
    404: refusal(
        "No such submission (or file) visible to this token: another region's is answered the same."
    ),
    409: refusal(
        "Conflicts with the submission's state: sealed, incomplete, a concurrent upload, an offset mismatch."
    ),
    411: refusal("A PUT without Content-Length."),
    413: refusal("Larger than the receiver accepts."),
    415: refusal("A Content-Encoding on a PUT."),
    422: refusal("Refused metadata, file name, registration or checksum; names the field."),
    503: refusal("Every upload slot is taken, or the event could not be sent; try again."),
}


def refused(*statuses: int) -> dict[int, Answer]:
    """The documented error answers of a route (the 401 of the token check is added to all)."""
    return {status: REFUSED[status] for status in statuses}


# The registration body is checked by ``metadata.parse_registration`` (with the CPR guard and
# the inbox rule), not by a model; its schema is written out here.
REGISTRATION_SCHEMA = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "url"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "url": {"type": "string"}},
            },
        }
    },
}


class SubmissionPath(BaseModel):
    """A submission in the path; an id the receiver never issues is answered 404 by the handler."""

    id: str = Field(description="Submission id.")


class FilePath(SubmissionPath):
    name: str = Field(description="File name.")


class OpeningHeaders(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    idempotency_key: str | None = Field(default=None, alias="Idempotency-Key", min_length=1, max_length=128)


class UploadHeaders(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    upload_offset: str | None = Field(default=None, alias="Upload-Offset")
    content_range: str | None = Field(default=None, alias="Content-Range")


class ReceiverApi(Api):
    """Handlers over the submission store, the archive and an ``emit`` of file-received."""

    title = "genomhub receiver"
    description = (
        "Where the regions send genome files: open a submission with its metadata, send "
        "each file (resumable), seal it. A region's token acts for its own region; ngc's for all."
    )

    def __init__(
        self,
        store: SubmissionStore,
        layout: Layout,
        emit: Emit,
        tracer: Tracer,
        *,
        max_file_size: int,
        pace: Pace,
        bodies: BodyReaders,
        inboxes: dict[str, str],
        s3_part_size: int,
        writer: ArchiveWriter,
    ) -> None:
        self.store = store
        self.layout = layout
        self.writer = writer
        self.transit = Transit(layout, store, s3_part_size, writer)
        self.emit = emit
        self.tracer = tracer
        self.max_file_size = max_file_size
        self.pace = pace
        self.bodies = bodies
        self.inboxes = inboxes
        self.seal_wait = store.leases.length.total_seconds()
        """How long a seal queues behind another one: a lease's length, by which a dead
        holder's lease has run out."""

    def install(self, app: web.Application, tokens: Tokens) -> None:
        """The API's routes, named as :data:`OPERATIONS`, and their counters created at 0.

        :func:`count_requests` must be among the application's middlewares, ahead of the
        token check this adds, for the counters to count.
        """
        super().install(app, tokens)
        prepare_receiver(OPERATIONS)

    # -- helpers ---------------------------------------------------------------------
    async def _submission(self, request: web.Request) -> SubmissionState:
        """The submission named in the path, if the caller may act for its region.

        Another region's submission is answered exactly as one that does not exist (404, the
        same body): a 403 would tell a region which ids exist.
        """
        principal = principal_of(request)
        submission_id = request.match_info["id"]
        # Ids are what create() issues (uuid4 hex); any other cannot exist and never reaches
        # the database (PostgreSQL refuses a NUL in a string with an error, not a miss).
        state = (
            await asyncio.to_thread(self.store.get, submission_id)
            if ISSUED_ID.fullmatch(submission_id)
            else None
        )
        if state is None or not principal.may_act_for(state.region):
            raise error(404, "no such submission")
        telemetry.bind(submission_id=state.submission_id)
        return state

    async def _reload(self, state: SubmissionState) -> SubmissionState:
        return await asyncio.to_thread(self.store.get, state.submission_id) or state

    def _span(self, name: str, state: SubmissionState) -> Any:
        context = (
            telemetry.extract([("traceparent", state.traceparent.encode())]) if state.traceparent else None
        )
        return self.tracer.start_as_current_span(
            name,
            context=context,
            kind=SpanKind.SERVER,
            attributes={"genomhub.submission_id": state.submission_id, "genomhub.sample_id": state.sample_id},
        )

    def _held(self, submission_id: str, name: str, wait: float = 0.0) -> AbstractAsyncContextManager[Lease]:
        """The lease on one file of a submission (or on its seal, ``name`` :data:`SEAL_LOCK`),
        held in the receiver's database so that replicas behind one Service exclude each other
        as requests of one process do (:class:`shared.database.NamedLeases`). A replica that
        dies holding it frees it when the lease runs out; the upload then resumes from the
        partial's stored prefix, which stays the truth about what arrived."""
        return self.store.leases.held(f"{submission_id}/{name}", wait=wait)

    @staticmethod
    def _uploading(name: str) -> web.HTTPException:
        return error(409, f"{name} is being uploaded by another request", headers={"Retry-After": "5"})

    @staticmethod
    def _declared(state: SubmissionState, name: str) -> FileState:
        problem = file_name_problem(name)
        if problem is not None:
            raise error(422, "invalid file name", field="name", message=problem)
        declared = state.file(name)
        if declared is None:
            raise error(404, "no such file in this submission", field="name", message="not declared")
        return declared

    @staticmethod
    def _busy(reason: str) -> web.HTTPException:
        return error(503, f"{reason}; try again", headers={"Retry-After": "30"})

    @staticmethod
    def _open(state: SubmissionState) -> None:
        if state.sealed_at is not None:
            raise error(409, "the submission is sealed; open a new one to send more")

    async def _settle(
        self, state: SubmissionState, declared: FileState, got: StoredObject
    ) -> tuple[FileState, bool]:
        """Put a complete file in place, or point at the sample's identical copy; record it."""
        headers = self.writer.headers
        if declared.declared_sha256 and got.sha256 != declared.declared_sha256:
            await asyncio.to_thread(archive.discard, got.url, headers)
            raise error(
                422,
                "sha256 mismatch",
                field="sha256",
                message=f"{declared.name}: declared {declared.declared_sha256}, received {got.sha256}",
            )
        if declared.complete:
            await asyncio.to_thread(archive.discard, got.url, headers)
            if got.sha256 == declared.sha256:
                return declared, True
            raise error(
                409, f"{declared.name} has already arrived with other bytes (sha256 {declared.sha256})"
            )
        copy = await asyncio.to_thread(self.store.copy_in_sample, state.region, state.sample_id, got.sha256)
        deduplicated = copy is not None and await asyncio.to_thread(archive.exists, copy.url)
        if copy is not None and deduplicated:
            await asyncio.to_thread(archive.discard, got.url, headers)
            url = copy.url
        else:
            url = self.layout.final(state.region, state.sample_id, state.submission_id, declared.name)
            await asyncio.to_thread(archive.commit, got.url, url, headers)
        stored = StoredFile(
            name=declared.name, role=declared.role, url=url, size=got.size, sha256=got.sha256, md5=got.md5
        )
        await asyncio.to_thread(self.store.complete_file, state.submission_id, stored)
        log.info(
            "file received", name=declared.name, size=got.size, sha256=got.sha256, deduplicated=deduplicated
        )
        after = await asyncio.to_thread(self.store.get, state.submission_id)
        assert after is not None
        done = after.file(declared.name)
        assert done is not None
        return done, deduplicated

    # -- handlers --------------------------------------------------------------------
    @route(
        "POST",
        "/v1/submissions",
        name="create",
        operation_id="openSubmission",
        summary="Open a submission; the same Idempotency-Key with the same metadata answers the first.",
        headers=OpeningHeaders,
        body={"application/json": NewSubmission},
        responses={
            201: answer("Opened.", Opened),
            200: answer("Opened before with this Idempotency-Key and this metadata.", Opened),
            **refused(400, 403, 413, 422),
        },
    )
    async def create(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        payload = await json_body(request)
        try:
            meta = parse_submission(payload)
        except MetadataError as exc:
            raise metadata_error(exc) from None
        require_region(request, meta.region)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 128:
            raise error(
                400, "invalid Idempotency-Key", field="Idempotency-Key", message="must be 1 to 128 characters"
            )
        upstream = telemetry.extract([(k.lower(), v.encode()) for k, v in request.headers.items()])
        with self.tracer.start_as_current_span(
            "receiver submission", context=upstream, kind=SpanKind.SERVER
        ) as span:
            try:
                state, created = await asyncio.to_thread(
                    self.store.create, new_submission_id(), meta, principal.name, key, traceparent_now()
                )
            except IdempotencyKeyReused:
                raise error(
                    422,
                    "Idempotency-Key reused with another body",
                    field="Idempotency-Key",
                    code="idempotency_key_reused",
                    message="this key opened a submission with other metadata; use a new key for new metadata",
                ) from None
            span.set_attribute("genomhub.submission_id", state.submission_id)
            span.set_attribute("genomhub.sample_id", state.sample_id)
            linked = await self._link_known_files(state) if created else []
            if linked:
                state = await self._reload(state)
            log.info(
                "submission opened" if created else "submission replayed",
                submission_id=state.submission_id,
                region=state.region,
                sample_id=state.sample_id,
                files=len(state.files),
                already_archived=linked,
            )
        trace_id = state.traceparent.split("-")[1] if state.traceparent else None
        return json_answer(
            Opened(
                submission_id=state.submission_id,
                trace_id=trace_id,
                files=[FileView.of(f) for f in state.files],
            ),
            status=201 if created else 200,
        )

    async def _link_known_files(self, state: SubmissionState) -> list[str]:
        """Declared files whose sha256 the sample already has: received without a transfer."""
        linked = []
        for f in state.files:
            if f.declared_sha256 is None:
                continue
            copy = await asyncio.to_thread(
                self.store.copy_in_sample, state.region, state.sample_id, f.declared_sha256
            )
            if copy is None or not await asyncio.to_thread(archive.exists, copy.url):
                continue
            stored = StoredFile(
                name=f.name, role=f.role, url=copy.url, size=copy.size, sha256=copy.sha256, md5=copy.md5
            )
            await asyncio.to_thread(self.store.complete_file, state.submission_id, stored)
            linked.append(f.name)
        return linked

    @route(
        "GET",
        "/v1/submissions/{id}",
        name="show",
        operation_id="showSubmission",
        summary="What has arrived.",
        path_parameters=SubmissionPath,
        responses={200: answer("The submission.", Shown), **refused(404)},
    )
    async def show(self, request: web.Request) -> web.Response:
        state = await self._submission(request)
        listed = []
        for f in state.files:
            arrived = (
                None
                if f.complete
                else await asyncio.to_thread(self.transit.arrived, state.submission_id, f.name)
            )
            listed.append(FileView.of(f, arrived=arrived))
        shown = Shown(
            submission_id=state.submission_id,
            region=state.region,
            sample_id=state.sample_id,
            analysis_type=state.analysis_type,
            sealed_at=state.sealed_at.isoformat() if state.sealed_at else None,
            event_id=state.event_id,
            files=listed,
        )
        return json_answer(shown, headers=NO_STORE)

    @route(
        "HEAD",
        "/v1/submissions/{id}/files/{name}",
        name="head",
        operation_id="fileOffset",
        summary="How much of the file has arrived (Upload-Offset, Upload-Complete).",
        path_parameters=FilePath,
        responses={200: answer("Upload-Offset and Upload-Complete."), **refused(404, 422)},
    )
    async def head(self, request: web.Request) -> web.Response:
        state = await self._submission(request)
        declared = self._declared(state, request.match_info["name"])
        if declared.complete:
            headers = {
                "Upload-Offset": str(declared.size),
                "Upload-Complete": "?1",
                "ETag": f'"{declared.sha256}"',
            }
        else:
            have = await asyncio.to_thread(self.transit.arrived, state.submission_id, declared.name)
            headers = {"Upload-Offset": str(have), "Upload-Complete": "?0"}
        return web.Response(status=200, headers={**headers, **NO_STORE})

    @route(
        "PUT",
        "/v1/submissions/{id}/files/{name}",
        name="put",
        operation_id="uploadFile",
        summary="The file's bytes, whole or from Upload-Offset / a Content-Range.",
        path_parameters=FilePath,
        headers=UploadHeaders,
        body={"application/octet-stream": {"type": "string", "format": "binary"}},
        responses={
            200: answer("The file is complete.", FileView),
            202: answer("A piece arrived.", Piece),
            **refused(400, 404, 409, 411, 413, 415, 422, 503),
        },
    )
    async def put(self, request: web.Request) -> web.Response:
        state = await self._submission(request)
        self._open(state)
        declared = self._declared(state, request.match_info["name"])
        if request.content_length is None:
            raise error(
                411, "Content-Length is required: it is how a cut-off upload is told from a whole one"
            )
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise error(
                415, "Content-Encoding is not accepted: send the file's bytes as they are (a .gz as it is)"
            )
        try:
            place = placement(
                request.headers.get("Upload-Offset"),
                request.headers.get("Content-Range"),
                request.content_length,
            )
        except BadRange as exc:
            raise error(400, "invalid range", field="Upload-Offset/Content-Range", message=str(exc)) from None
        if place.total > self.max_file_size:
            raise error(413, f"files larger than {self.max_file_size} bytes are not accepted")
        refusal = self.bodies.busy_for(state.region)
        if refusal is not None:
            raise self._busy(refusal)
        try:
            async with self._held(state.submission_id, declared.name) as lease:
                state = await self._reload(state)
                self._open(state)
                declared = state.file(declared.name) or declared
                if declared.complete and place.offset != 0:
                    if place.offset == declared.size and place.length == 0:
                        return json_answer(FileView.of(declared, deduplicated=False))
                    raise error(
                        409,
                        f"{declared.name} is complete; only a whole re-upload (no offset) is accepted",
                        headers={"Upload-Offset": str(declared.size)},
                    )
                with self._span(f"receiver upload {declared.name}", state) as span:
                    span.set_attribute("genomhub.upload_offset", place.offset)
                    return await self._receive(
                        request, state, declared, place.offset, place.ends_file, place.total, lease
                    )
        except LeaseHeld:  # only taking the lease raises it
            raise self._uploading(declared.name) from None

    async def _receive(
        self,
        request: web.Request,
        state: SubmissionState,
        declared: FileState,
        offset: int,
        ends_file: bool,
        total: int,
        lease: Lease,
    ) -> web.Response:
        """Stream the body into the file in transit while ``lease`` holds: once it is lost
        (another replica may have taken the file over), the next read stops the upload with a
        409. A file not yet complete is written where it belongs if the store keeps it
        invisible until whole (S3); a complete one is never rewritten."""
        final_url = (
            None
            if declared.complete
            else self.layout.final(state.region, state.sample_id, state.submission_id, declared.name)
        )
        try:
            upload = await asyncio.to_thread(
                self.transit.open,
                state.submission_id,
                declared.name,
                offset,
                self.max_file_size,
                total,
                ends_file,
                final_url,
            )
        except OffsetMismatch as exc:
            raise error(
                409,
                "Upload-Offset does not match what has arrived",
                headers={"Upload-Offset": str(exc.arrived)},
                arrived=exc.arrived,
            ) from None
        expected = request.content_length or 0
        try:
            with RECEIVER_UPLOADS_IN_FLIGHT.labels(state.region).track_inprogress():
                await self.bodies.take(
                    request,
                    lambda readinto: upload.take(lease.guard(readinto)),
                    self.pace,
                    holder=state.region,
                )
        except ReadersBusy as exc:
            raise self._busy(str(exc)) from None
        except LeaseLost as exc:
            await asyncio.shield(asyncio.to_thread(upload.close))
            request[OUTCOME] = RequestOutcome.INTERRUPTED
            log.warning("upload stopped: lease lost", name=declared.name, arrived=upload.arrived)
            raise error(
                409,
                str(exc),
                headers={"Upload-Offset": str(upload.arrived), "Retry-After": "5"},
                arrived=upload.arrived,
            ) from None
        except BodyInterrupted as exc:
            await asyncio.shield(asyncio.to_thread(upload.close))
            RECEIVER_RECEIVED_BYTES.labels(state.region, "upload").inc(upload.arrived - offset)
            request[OUTCOME] = RequestOutcome.INTERRUPTED
            log.warning("upload interrupted", name=declared.name, arrived=upload.arrived, reason=str(exc))
            raise error(
                400,
                "upload interrupted",
                headers={"Upload-Offset": str(upload.arrived)},
                arrived=upload.arrived,
            ) from None
        except SizeLimitExceeded:
            await asyncio.shield(asyncio.to_thread(upload.close))
            await asyncio.to_thread(self.transit.discard, state.submission_id, declared.name)
            raise error(413, f"files larger than {self.max_file_size} bytes are not accepted") from None
        finally:
            await asyncio.shield(asyncio.to_thread(upload.close))
        RECEIVER_RECEIVED_BYTES.labels(state.region, "upload").inc(upload.arrived - offset)
        if upload.size - offset != expected:  # never taken for a whole file, whatever the cause
            request[OUTCOME] = RequestOutcome.INTERRUPTED
            raise error(
                400,
                "upload interrupted",
                headers={"Upload-Offset": str(upload.arrived)},
                arrived=upload.arrived,
            )
        if not ends_file:
            return json_answer(
                Piece(name=declared.name, complete=False, arrived=upload.arrived),
                status=202,
                headers={"Upload-Offset": str(upload.arrived)},
            )
        lease.check()
        done, deduplicated = await self._settle(state, declared, await asyncio.to_thread(upload.result))
        return json_answer(
            FileView.of(done, deduplicated=deduplicated),
            headers={"Upload-Offset": str(done.size), "Upload-Complete": "?1"},
        )

    @route(
        "POST",
        "/v1/submissions/{id}/register",
        name="register",
        operation_id="registerFiles",
        summary="Copy declared files from the region's inbox.",
        path_parameters=SubmissionPath,
        body={"application/json": REGISTRATION_SCHEMA},
        responses={
            200: answer("Copied.", Registered),
            **refused(400, 404, 409, 413, 422),
        },
    )
    async def register(self, request: web.Request) -> web.Response:
        state = await self._submission(request)
        self._open(state)
        payload = await json_body(request)
        inbox = self.inboxes.get(state.region)
        try:
            pairs = parse_registration(payload, inbox)
        except MetadataError as exc:
            raise metadata_error(exc) from None
        assert inbox is not None  # parse_registration refuses a region without one
        for i, (name, _) in enumerate(pairs):
            if state.file(name) is None:
                raise error(422, "invalid registration", field=f"files[{i}].name", message="not declared")
        results = []
        with self._span("receiver register", state):
            for i, (name, url) in enumerate(pairs):
                try:
                    async with self._held(state.submission_id, name):
                        results.append(await self._copy_in(state, i, name, url, inbox))
                except LeaseHeld:  # only taking the lease raises it
                    raise self._uploading(name) from None
        return json_answer(Registered(submission_id=state.submission_id, files=results))

    async def _copy_in(self, state: SubmissionState, i: int, name: str, url: str, inbox: str) -> FileView:
        """Copy one registered file from the inbox into place, under its lease."""
        current = await self._reload(state)
        declared = current.file(name)
        assert declared is not None
        partial_url = self.layout.partial(state.submission_id, name)
        try:
            got = await asyncio.to_thread(
                copy_into, url, partial_url, self.writer, self.max_file_size, inside=inbox
            )
        except OutsideRoot as exc:
            raise error(422, "invalid registration", field=f"files[{i}].url", message=str(exc)) from None
        except EncryptionError as exc:  # a Crypt4GH file not for NGC's key, damaged or cut short
            raise error(
                422, "invalid registration", field=f"files[{i}].url", code="not_decryptable", message=str(exc)
            ) from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise error(
                422,
                "invalid registration",
                field=f"files[{i}].url",
                message="no such file in the inbox",
            ) from None
        except SizeLimitExceeded:
            raise error(413, f"files larger than {self.max_file_size} bytes are not accepted") from None
        RECEIVER_RECEIVED_BYTES.labels(state.region, "register").inc(got.size)
        done, deduplicated = await self._settle(current, declared, got)
        return FileView.of(done, deduplicated=deduplicated)

    @route(
        "POST",
        "/v1/submissions/{id}/seal",
        name="seal",
        operation_id="sealSubmission",
        summary="Every file complete: emit file-received, once; a later seal answers the same.",
        path_parameters=SubmissionPath,
        responses={200: answer("Sealed.", Sealed), **refused(404, 409, 503)},
    )
    async def seal(self, request: web.Request) -> web.Response:
        """Seal once: the first seal emits file-received; every later one answers the same and
        emits nothing (``genomhub replay`` is what re-drives processing). Only a seal whose
        event never reached the broker sends it again."""
        state = await self._submission(request)
        try:
            async with self._held(state.submission_id, SEAL_LOCK, wait=self.seal_wait):
                state = await self._reload(state)
                if state.sealed_at is not None and state.emitted_at is not None:
                    log.info("seal repeated; nothing emitted", submission_id=state.submission_id)
                    return self._sealed(state)
                missing = [f.name for f in state.files if not f.complete]
                if missing:
                    arrived = {}
                    for name in missing:
                        arrived[name] = await asyncio.to_thread(
                            self.transit.arrived, state.submission_id, name
                        )
                    raise error(409, "files are missing or incomplete", missing=missing, arrived=arrived)
                with self._span("receiver seal", state) as span:
                    event_id = derive_id(state.submission_id, "receiver", FileReceived.ce_type())
                    sealed = await asyncio.to_thread(self.store.seal, state.submission_id, event_id)
                    try:
                        await self.publish(sealed)
                    except Exception as exc:
                        span.record_exception(exc)
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
                        log.exception("file-received not emitted", submission_id=state.submission_id)
                        raise error(503, "sealed, but the event could not be sent; seal again") from None
                return self._sealed(sealed)
        except LeaseHeld:  # only taking the lease raises it
            raise error(
                409, "the submission is being sealed by another request", headers={"Retry-After": "5"}
            ) from None

    @staticmethod
    def _sealed(sealed: SubmissionState) -> web.Response:
        assert sealed.sealed_at is not None and sealed.event_id is not None
        return json_answer(
            Sealed(
                submission_id=sealed.submission_id,
                event_id=sealed.event_id,
                received_at=sealed.sealed_at.isoformat(),
                files=[FileView.of(f) for f in sealed.files],
            )
        )

    async def publish(self, sealed: SubmissionState) -> str:
        """Emit the sealed submission's file-received (same id every time) and note it sent."""
        assert sealed.event_id is not None
        event = FileReceived(submission=sealed.submission(), files=[f.stored() for f in sealed.files])
        event_id = await self.emit(event, sealed.event_id)
        await asyncio.to_thread(self.store.mark_emitted, sealed.submission_id)
        log.info("file-received emitted", submission_id=sealed.submission_id, event_id=event_id)
        return event_id

    async def resend_unsent(self) -> None:
        """After a crash between seal and emit: send what was sealed but never acknowledged."""
        for submission_id in await asyncio.to_thread(self.store.sealed_not_emitted):
            try:
                async with self._held(submission_id, SEAL_LOCK):  # not while another replica seals
                    state = await asyncio.to_thread(self.store.get, submission_id)
                    if state is None or state.emitted_at is not None:
                        continue
                    with self._span("receiver resend", state):
                        await self.publish(state)
            except LeaseHeld:
                continue  # the replica holding the seal sends it
            except Exception:  # the client's next seal sends it; the service keeps serving
                log.exception("resend of file-received failed", submission_id=submission_id)


OPERATIONS = tuple(declared.name for _, declared in ReceiverApi.routes() if declared.name)
"""The API's routes by name, as ``genomhub_receiver_requests_total`` labels them."""
document = ReceiverApi.document
