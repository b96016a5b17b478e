"""A clinician's access request as the API receives it: parsed, and refused with a reason.

A request is for concrete patient treatment only (the minutes' one purpose), with a case
reference that says which treatment; without them it is refused. A CPR number anywhere in
the body (a value, a field's name, the case reference) refuses the whole request: the access
service deals in pseudonyms only, and the refusal names the field without quoting it.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.encryption import parse_public_key
from shared.events import Deliverable, GenomicRange, Pseudonym, Region, TypedText, Urgency
from shared.http import FieldProblem
from shared.identifiers import contains_cpr, json_texts, shown


class RequestRefused(ValueError):
    """A request body the service will not take: each problem names its field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class AccessRequestBody(BaseModel):
    """What a clinician asks for. The samples are named by the owner's pseudonyms, or by the
    national patient pseudonym (``patient``), which the service resolves to the owner's
    accepted samples of that patient."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: Region = Field(description="The region that reported the samples (discovery says which).")
    patient: Pseudonym | None = Field(default=None, description="The national patient pseudonym.")
    samples: list[Pseudonym] = Field(default_factory=list, max_length=100)
    department: TypedText = Field(min_length=1, max_length=128, description="The requesting department.")
    wants: list[Deliverable] = Field(min_length=1)
    genomic_ranges: list[GenomicRange] = Field(default_factory=list, max_length=100)
    purpose: str = Field(description="Always `patient-treatment`: the only purpose a working copy is for.")
    case_reference: TypedText = Field(min_length=1, max_length=128)
    urgency: Urgency

    @model_validator(mode="after")
    def _named_and_for_treatment(self) -> AccessRequestBody:
        if self.purpose != "patient-treatment":
            raise ValueError("a working copy is handed out for patient-treatment only")
        if (self.patient is None) == (not self.samples):
            raise ValueError("name either the patient or the samples, not both and not neither")
        return self


def parse_request(payload: Any) -> AccessRequestBody:
    """``payload`` as a request, or :class:`RequestRefused` with every problem."""
    return parse_body(AccessRequestBody, payload)


class DecisionBody(BaseModel):
    """The owner's data steward's answer: grant, or deny with a reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grant: bool
    reason: TypedText = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _denial_has_reason(self) -> DecisionBody:
        if not self.grant and not self.reason.strip():
            raise ValueError("a denial says why (reason)")
        return self


class RevocationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: TypedText = Field(min_length=1, max_length=2000)


class DepartmentKeyBody(BaseModel):
    """A department's Crypt4GH public key, as ``crypt4gh-keygen`` (or ``genomhub keys``) wrote it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region
    department: TypedText = Field(min_length=1, max_length=128, description="As its requests name it.")
    public_key: str = Field(max_length=512, description="The public key file's text.")

    @field_validator("public_key")
    @classmethod
    def _a_crypt4gh_key(cls, text: str) -> str:
        parse_public_key(text)
        return text

    @property
    def key_bytes(self) -> bytes:
        return parse_public_key(self.public_key)


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], payload: Any) -> M:
    """``payload`` as ``model``, or :class:`RequestRefused` naming each field refused: first
    every field that holds a CPR number (value or name), never quoting it."""
    cpr_fields = [where for where, text in json_texts(payload) if contains_cpr(text)]
    if cpr_fields:
        raise RequestRefused(
            [
                FieldProblem(
                    field=where, message="looks like a Danish CPR number; access deals in pseudonyms only"
                )
                for where in dict.fromkeys(cpr_fields)
            ]
        )
    return _validated(model, payload)


class PassportsBody(BaseModel):
    """DRS 1.4's POST body: GA4GH Passports instead of a bearer token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passports: list[Annotated[str, Field(min_length=1, max_length=16_384)]] = Field(
        min_length=1, max_length=10
    )


def parse_passports(payload: Any) -> PassportsBody:
    """``payload`` as DRS's passports body, or :class:`RequestRefused`. Not searched for CPR
    numbers: its values are JWTs, opened only by their signature and never stored or shown,
    and base64 text holds CPR-shaped digits now and then."""
    return _validated(PassportsBody, payload)


def _validated(model: type[M], payload: Any) -> M:
    if not isinstance(payload, dict):
        raise RequestRefused([FieldProblem(field="body", message="must be a JSON object")])
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestRefused(
            [
                FieldProblem(
                    field=".".join(shown(p) for p in e["loc"]) or "body",
                    message="unknown field" if e["type"] == "extra_forbidden" else e["msg"],
                )
                for e in exc.errors(include_input=False, include_url=False)
            ]
        ) from None
