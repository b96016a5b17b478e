"""CloudEvents 1.0 over Kafka, binary content mode.

The event's attributes travel as ``ce_*`` record headers beside the W3C trace context, and
the record value is the event's JSON data alone, so that any Kafka client in any language
can read the data without knowing CloudEvents. Ids are deterministic: a service derives its
output's id from its input's id, so a replayed input yields the same output id and every
downstream upsert converges instead of counting twice.

Both ways through hold an event to its models' meaning checks (``shared/events.py``): a
record that decodes to an impossible event is refused with the check's own code (which the
bus puts on the dead letter), and :func:`encode` refuses to put an impossible event on the
bus at all. Messages of refusals never quote the offending value: it may be a CPR number.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from shared.events import (
    CLOCK_SKEW,
    DIRECT_IDENTIFIER,
    IMPOSSIBLE_TIME,
    INCONSISTENT,
    MODEL_BY_TYPE,
    REFUSAL_CODES,
    SERVICE_EPOCH,
    UNSAFE_ID,
    Event,
    SubmissionEvent,
)
from shared.identifiers import (
    contains_cpr,
    first_direct_identifier,
    json_names_may_hold_cpr,
    json_texts,
    minted_free_of_cpr,
    shown,
)
from shared.paths import PathEscape, inside

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
ID_NAMESPACE = uuid.UUID("6f1c8d52-5f0e-4a51-9a57-0a3c3e5b1f0d")
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")
WRITTEN = (*REQUIRED, "ce_time", "ce_subject", "ce_dataschema", "content-type")
"""Every header :func:`encode` writes; a refusal names only these, never a producer's own."""
MAX_ATTRIBUTE = 200
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_SOURCE = re.compile(r"/[A-Za-z0-9._/-]*")

E = TypeVar("E", bound=Event)

Headers = list[tuple[str, bytes]]


class UndecodableEvent(Exception):
    """A record that is not a genomhub event; ``code`` says which rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class RefusedEvent(UndecodableEvent):
    """A well-formed event its consumer refuses before changing anything (e.g. a file outside
    the archive it reads from); the bus dead-letters the record with ``code``."""


OUTSIDE_ARCHIVE = "outside_archive"


def require_archived(store_url: str, urls: Iterable[str]) -> None:
    """Refuse (:class:`RefusedEvent`) an event that names a file outside the archive.

    A service that reads the files an event names (the validator, the harmoniser) reads
    with its own rights; a forged record naming ``file:///etc/shadow`` or another store
    would have it read, process and archive that. Only files under ``store_url`` are read.
    """
    for url in urls:
        try:
            inside(store_url, url)
        except PathEscape as exc:
            raise RefusedEvent(OUTSIDE_ARCHIVE, f"a file of the event is not in the archive: {exc}") from None


class ImpossibleEvent(ValueError):
    """An event a service was about to emit breaks the events' meaning checks; not sent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def refusal(exc: ValidationError) -> tuple[str, str]:
    """The code and message of a failed validation, without the input values.

    A CPR number is named as such whatever else is wrong; a record that breaks the shape
    otherwise is ``schema``; one that has the shape gets its first failed meaning check
    (:data:`shared.events.REFUSAL_CODES`); the message names each failing field and rule, never its value.
    """
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    types = [str(e["type"]) for e in errors]
    message = "; ".join(f"{'.'.join(shown(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in errors)
    if DIRECT_IDENTIFIER in types:  # a CPR number is named as such, whatever else is wrong
        return DIRECT_IDENTIFIER, message
    if all(t in REFUSAL_CODES for t in types):  # the shape holds, the meaning does not
        return types[0], message
    return "schema", message


def checked(event: E) -> E:
    """``event`` if it passes its model's checks now; else :class:`ImpossibleEvent`.

    A model validates when it is built, but ``model_copy(update=...)`` skips validation and
    the time checks depend on the clock, so the way out checks again.
    """
    _checked_json(event)
    return event


def _checked_json(event: Event) -> str:
    """The JSON of ``event`` once it passed its model's checks (:func:`checked`): what was
    checked is what is sent, written once."""
    data = event.model_dump_json()
    try:
        type(event).model_validate_json(data)
    except ValidationError as exc:
        code, message = refusal(exc)
        raise ImpossibleEvent(code, f"refusing to emit {event.event_name}: {message}") from None
    return data


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """One decoded event: its CloudEvents attributes and its typed data."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: E
    headers: Headers = field(default_factory=list, compare=False, repr=False)


def derive_id(cause_id: str, service: str, ce_type: str) -> str:
    """The id of the event ``service`` emits of ``ce_type`` in reply to event ``cause_id``:
    the same for the same cause, and never one the CPR guard on ``ce_id`` refuses."""
    name = f"{cause_id}|{service}|{ce_type}"
    return minted_free_of_cpr(lambda n: str(uuid.uuid5(ID_NAMESPACE, f"{name}|{n}" if n else name)))


def normalise_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Headers:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), bytes(v) if v is not None else b"") for k, v in items]


def subject_of(event: Event) -> str:
    """The CloudEvents subject of ``event``: its submission's id, or the key of an event about
    no one submission (a statement's month)."""
    return event.submission.submission_id if isinstance(event, SubmissionEvent) else event.key()


def record_keys(event: Event) -> frozenset[bytes]:
    """The record keys that may carry ``event``: its own (:meth:`Event.key`), and for a
    submission's event also the bare pseudonym, the key of records written before samples
    were keyed by region, which a replay from the log's start still reads. Neither names
    another sample than the data does."""
    keys = {event.key()}
    if isinstance(event, SubmissionEvent):
        keys.add(event.submission.sample_id)
    return frozenset(k.encode() for k in keys)


def _attribute(name: str, value: str, shape: re.Pattern[str], rule: str) -> None:
    """Refuse a CloudEvents attribute that is not of the shape genomhub's producers write.

    The id and the source are stored as they come (the catalogue's timeline, billing's
    accruals) and end in logs and traces, so they are held to the ids' rules: a short plain
    token without a CPR number. The message never quotes the value.
    """
    if any(contains_cpr(part) for part in value.split("/")):
        raise UndecodableEvent(DIRECT_IDENTIFIER, f"header {name} looks like it holds a Danish CPR number")
    if len(value) > MAX_ATTRIBUTE or not shape.fullmatch(value):
        raise UndecodableEvent(
            UNSAFE_ID, f"header {name} is not {rule} of at most {MAX_ATTRIBUTE} characters"
        )


def encode(
    event: Event, *, event_id: str, source: str, time: datetime | None = None
) -> tuple[Headers, bytes]:
    """Headers and value of the record that carries ``event``; an impossible one is refused."""
    data = _checked_json(event)
    subject = subject_of(event)
    moment = (time or datetime.now(UTC)).astimezone(UTC)
    headers: Headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event.ce_type().encode()),
        ("ce_time", moment.isoformat().replace("+00:00", "Z").encode()),
        ("ce_subject", subject.encode()),
        ("ce_dataschema", event.schema_uri().encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    return headers, data.encode()


_UNKEYED = b"\x00not given"


def _not_a_number(constant: str) -> float:
    raise UndecodableEvent("not_json", f"value holds {constant}, which JSON does not have")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as infinity
        raise UndecodableEvent("not_json", "value holds a number too large for a float")
    return number


def read_json(value: bytes) -> Any:
    """The record's value parsed as JSON (RFC 8259), or :class:`UndecodableEvent`.

    Python's parser takes more than JSON and fails in more ways than it says: it reads
    ``NaN``, ``Infinity`` and ``1e999`` as infinity (which would pass a ``ge=0`` bound and reach the catalogue),
    raises ``ValueError`` on an integer of more than 4300 digits and ``RecursionError`` on
    deep nesting. Either escaped the bus's handling and stopped the consumer, on the same
    record again at every restart; now each is a dead letter like any other non-JSON value.
    """
    try:
        return json.loads(value, parse_constant=_not_a_number, parse_float=_finite)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UndecodableEvent("not_json", f"value is not JSON: {exc}") from exc
    except RecursionError:
        raise UndecodableEvent("not_json", "value is nested too deeply to read") from None
    except ValueError:
        raise UndecodableEvent("not_json", "value holds a number too long to read") from None


def canonical_json(value: Any) -> bytes:
    """The one serialisation that is hashed or signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode(
    headers: Headers, value: bytes | None, expected: type[E], record_key: bytes | None = _UNKEYED
) -> Envelope[E]:
    """The event in a record, or :class:`UndecodableEvent` saying precisely what is wrong.

    ``record_key`` is the record's key, which the bus passes: it must be the data's own
    (:func:`record_keys`); tools that read a record's value alone leave it out.
    """
    attrs: dict[str, str] = {}
    for key, raw in headers:
        if key.startswith("ce_") or key == "content-type":
            try:
                attrs[key] = raw.decode()
            except UnicodeDecodeError as exc:
                name = key if key in WRITTEN else "ce_*"
                raise UndecodableEvent("bad_header", f"header {name} is not UTF-8") from exc
    missing = [k for k in REQUIRED if k not in attrs]
    if missing:
        raise UndecodableEvent("missing_header", f"missing CloudEvents headers {missing}")
    _attribute(
        "ce_id", attrs["ce_id"], _EVENT_ID, "a letter or digit, then letters, digits, '.', '_', ':' or '-'"
    )
    _attribute("ce_source", attrs["ce_source"], _SOURCE, "a path of letters, digits, '.', '_' and '-'")
    # No header's value is quoted below: a hostile producer chooses it, and it would reach
    # the dead letter's reason and the log.
    if attrs["ce_specversion"] != SPEC_VERSION:
        raise UndecodableEvent("spec_version", f"ce_specversion is not {SPEC_VERSION}")
    ce_type = attrs["ce_type"]
    if ce_type not in MODEL_BY_TYPE:
        raise UndecodableEvent("unknown_type", "ce_type is no genomhub event type")
    if ce_type != expected.ce_type():
        raise UndecodableEvent("unexpected_type", f"ce_type {ce_type!r} on a topic of {expected.ce_type()!r}")
    # The schema a record names is how a reader without genomhub's models checks its data:
    # it must be its type's. Records written before every record named one carry none, and
    # the log keeps them forever for replays, so an absent one is its type's by default.
    if attrs.get("ce_dataschema", expected.schema_uri()) != expected.schema_uri():
        raise UndecodableEvent(INCONSISTENT, f"ce_dataschema is not the schema of {ce_type}")
    if attrs.get("content-type", CONTENT_TYPE).split(";")[0].strip() != CONTENT_TYPE:
        raise UndecodableEvent("content_type", f"content-type is not {CONTENT_TYPE}")
    if value is None:
        raise UndecodableEvent("empty_value", "record has no value")
    payload = read_json(value)
    # A field's name is no place for a CPR number either, and unlike a value it would be
    # part of the refusal's location.
    found = (
        first_direct_identifier(json_texts(payload, keys_only=True))
        if json_names_may_hold_cpr(value)
        else None
    )
    if found is not None:
        raise UndecodableEvent(DIRECT_IDENTIFIER, f"a field name in {found} looks like a Danish CPR number")
    try:
        data = expected.model_validate(payload)
    except ValidationError as exc:
        code, message = refusal(exc)
        raise UndecodableEvent(code, f"data fails the {expected.event_name} checks: {message}") from None
    try:
        time = datetime.fromisoformat(attrs.get("ce_time", "").replace("Z", "+00:00"))
    except ValueError:
        raise UndecodableEvent("bad_time", "ce_time is not an ISO 8601 instant") from None
    if time.tzinfo is None:
        raise UndecodableEvent("bad_time", "ce_time carries no time zone")
    if time < SERVICE_EPOCH or time > datetime.now(UTC) + CLOCK_SKEW:
        raise UndecodableEvent(
            IMPOSSIBLE_TIME, "ce_time lies outside the service's life: before 2019 or in the future"
        )
    # The headers and the key travel beside the data and are read without it (the partition,
    # traces, logs, the timeline's order): they must say what the data says.
    subject = subject_of(data)
    if attrs.get("ce_subject", subject) != subject:
        raise UndecodableEvent(INCONSISTENT, "ce_subject names another submission than the data")
    if record_key is not _UNKEYED and record_key not in record_keys(data):
        raise UndecodableEvent(INCONSISTENT, "the record's key names another sample than its data")
    return Envelope(
        id=attrs["ce_id"],
        source=attrs["ce_source"],
        type=ce_type,
        time=time,
        subject=subject,
        data=data,
        headers=headers,
    )
