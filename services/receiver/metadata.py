"""What a region declares when it opens a submission, and the rules its metadata must keep.

Pure: no HTTP, no storage. The API turns a :class:`MetadataError` into a 422 that names the
field, so an uploader knows exactly what to fix, and never echoes the offending value (it may
be a CPR number).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events import AnalysisType, FileRole, Pseudonym, Region, Sha256, TypedText
from shared.identifiers import first_direct_identifier, json_texts, shown
from shared.paths import MAX_NAME
from shared.paths import file_name_problem as file_name_problem  # the receiver API asks it here


@dataclass(frozen=True)
class MetadataError(Exception):
    """Metadata refused: ``code`` is stable (``invalid``, ``direct_identifier``), ``field`` a path."""

    code: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    @property
    def title(self) -> str:
        """The error's title in the API's one error body (``shared.http.ErrorBody``)."""
        return "direct identifier" if self.code == "direct_identifier" else "invalid metadata"


class DeclaredFile(BaseModel):
    """One file the submission will contain; its bytes arrive later by PUT or register."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=MAX_NAME)
    role: FileRole
    sha256: Sha256 | None = None


class NewSubmission(BaseModel):
    """The metadata of ``POST /v1/submissions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region
    department: TypedText = Field(min_length=1, max_length=128)
    sample_id: Pseudonym
    patient_id: Pseudonym
    analysis_type: AnalysisType
    platform: TypedText = Field(default="ILLUMINA", min_length=1, max_length=64)
    files: list[DeclaredFile] = Field(min_length=1, max_length=1000)


def field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{shown(part)}" if path else shown(part))
    return path


def parse_submission(payload: Any) -> NewSubmission:
    """The submission in ``payload``, or :class:`MetadataError` naming the first bad field."""
    if not isinstance(payload, dict):
        raise MetadataError("invalid", "body", "expected a JSON object")
    # Direct identifiers first, on every string of the body, field names included: a CPR
    # number must be refused as such even when the field would also fail another rule (a
    # pseudonym pattern, a length, a type, an unknown field).
    raw = json_texts(payload, digests=frozenset({"sha256"}))
    found = first_direct_identifier(raw)
    if found is not None:
        raise MetadataError(
            "direct_identifier",
            found,
            "looks like a Danish CPR number; NGC's catalogue holds pseudonyms only",
        )
    try:
        submission = NewSubmission.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        raise MetadataError("invalid", field_path(tuple(first["loc"])), first["msg"]) from None
    seen: set[str] = set()
    for i, declared in enumerate(submission.files):
        problem = file_name_problem(declared.name)
        if problem is not None:
            raise MetadataError("invalid", f"files[{i}].name", problem)
        if declared.name in seen:
            raise MetadataError("invalid", f"files[{i}].name", "declared twice")
        seen.add(declared.name)
    return submission


def inbox_problem(url: str, inbox: str) -> str | None:
    """Why ``url`` is not a file inside the region's ``inbox`` URL, or None if it is.

    ``register`` reads with the receiver's own credentials, so a region may name only files
    under its own inbox: the prefix must match whole segments and no segment may climb.
    """
    prefix = inbox.rstrip("/") + "/"
    if not url.startswith(prefix):
        return "is not inside the region's inbox"
    rest = url[len(prefix) :]
    segments = rest.split("/")
    if not rest or any(s in ("", ".", "..") for s in segments):
        return "must name a file inside the inbox without '.', '..' or empty segments"
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in url) or "?" in url or "#" in url:
        return "must not carry control characters, a query or a fragment"
    return None


def parse_registration(payload: Any, inbox: str | None) -> list[tuple[str, str]]:
    """(name, url) pairs of ``POST .../register``, or :class:`MetadataError` naming the field."""
    if inbox is None:
        raise MetadataError("invalid", "region", "no inbox is configured for this region")
    if not isinstance(payload, dict) or not isinstance(payload.get("files"), list) or not payload["files"]:
        raise MetadataError("invalid", "files", "expected {'files': [{'name': ..., 'url': ...}, ...]}")
    found = first_direct_identifier(json_texts(payload))  # an inbox path names no patient either
    if found is not None:
        raise MetadataError(
            "direct_identifier", found, "looks like a Danish CPR number; name files by pseudonym"
        )
    pairs: list[tuple[str, str]] = []
    for i, item in enumerate(payload["files"]):
        if not isinstance(item, dict) or set(item) != {"name", "url"}:
            raise MetadataError("invalid", f"files[{i}]", "expected exactly 'name' and 'url'")
        name, url = item["name"], item["url"]
        if not isinstance(name, str) or not isinstance(url, str):
            raise MetadataError("invalid", f"files[{i}]", "'name' and 'url' must be strings")
        problem = file_name_problem(name)
        if problem is not None:
            raise MetadataError("invalid", f"files[{i}].name", problem)
        problem = inbox_problem(url, inbox)
        if problem is not None:
            raise MetadataError("invalid", f"files[{i}].url", problem)
        pairs.append((name, url))
    return pairs
