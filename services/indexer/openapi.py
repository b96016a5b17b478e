"""The OpenAPI 3.1 document of the catalogue API, served at ``/openapi.json``.

Response schemas are generated from the models the handlers serialise (``views.py``), and the
query parameters from the enums the filters validate against, so the document cannot drift
from what the API accepts and returns. Written in code rather than a YAML file for that reason.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic.json_schema import models_json_schema

from services.indexer.filters import FIRST_DAY, LAST_DAY, MAX_LIMIT
from services.indexer.views import SampleDetail, SamplePage, Stats, SubmissionDetail
from shared.events import AnalysisType, Region, SampleStatus
from shared.http import ErrorBody
from shared.openapi import parameter

REF = "#/components/schemas/{model}"


def _enum(values: type[StrEnum]) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=ref)}}},
    }


ERRORS = {
    "401": _json("ErrorBody", "Missing or invalid bearer token."),
    "422": _json("ErrorBody", "An unknown parameter, or a filter value the catalogue refuses."),
}


def document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "serialization") for m in (SamplePage, SampleDetail, SubmissionDetail, Stats, ErrorBody)],
        ref_template=REF,
    )
    region = parameter(
        "region", _enum(Region), "Only this region's samples; a region's token may name only its own."
    )
    sample_filters = [
        region,
        parameter("analysis", _enum(AnalysisType), "Analysis type."),
        parameter("status", _enum(SampleStatus), "Outcome of the sample's newest submission."),
        parameter(
            "received_from",
            {"type": "string", "format": "date"},
            f"First day of receipt, inclusive (Europe/Copenhagen); {FIRST_DAY} to {LAST_DAY}.",
        ),
        parameter(
            "received_to",
            {"type": "string", "format": "date"},
            f"Last day of receipt, inclusive (Europe/Copenhagen); not before received_from; {FIRST_DAY} to {LAST_DAY}.",
        ),
        parameter(
            "q",
            {"type": "string", "minLength": 2, "maxLength": 100},
            "Case-insensitive substring of sample id, patient pseudonym, submission id, department, platform.",
        ),
        parameter(
            "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}, "Page size."
        ),
        parameter(
            "cursor",
            {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
            "The `next_cursor` of the previous page (opaque).",
        ),
    ]
    forbidden = {"403": _json("ErrorBody", "The token's region may not read the named region.")}
    not_found = {"404": _json("ErrorBody", "No such record visible to this token.")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "genomhub national catalogue",
            "version": "1.0.0",
            "description": "What the Danish National Genome Database holds: metadata only. A region's token "
            "reads its own region's records; the national operator's (ngc) reads all.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/samples": {
                "get": {
                    "operationId": "listSamples",
                    "summary": "Samples, newest received first, keyset-paginated.",
                    "parameters": sample_filters,
                    "responses": {"200": _json("SamplePage", "A page of samples."), **forbidden, **ERRORS},
                }
            },
            "/v1/samples/{region}/{sample_id}": {
                "get": {
                    "operationId": "getSample",
                    "summary": "A sample with its files and submission history. A sample is its region's: "
                    "two regions may hold samples of the same pseudonym, and they are two samples.",
                    "parameters": [
                        parameter("region", _enum(Region), "The region that reported the sample.", "path"),
                        parameter(
                            "sample_id",
                            {"type": "string", "minLength": 1},
                            "The region's sample pseudonym.",
                            "path",
                        ),
                    ],
                    "responses": {"200": _json("SampleDetail", "The sample."), **not_found, **ERRORS},
                }
            },
            "/v1/submissions/{submission_id}": {
                "get": {
                    "operationId": "getSubmission",
                    "summary": "A submission and its timeline of events, with their trace ids.",
                    "parameters": [
                        parameter(
                            "submission_id", {"type": "string", "minLength": 1}, "Submission id.", "path"
                        )
                    ],
                    "responses": {"200": _json("SubmissionDetail", "The submission."), **not_found, **ERRORS},
                }
            },
            "/v1/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Samples and genome equivalents per region, month of receipt and status.",
                    "parameters": [region],
                    "responses": {"200": _json("Stats", "The statistics."), **forbidden, **ERRORS},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": defs["$defs"],
        },
    }
