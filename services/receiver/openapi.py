"""The OpenAPI 3.1 document of the receiver's upload API, served at ``/openapi.json``.

The request body of ``POST /v1/submissions`` and the error body are generated from the
models the handlers validate and answer with (``metadata.NewSubmission``,
``shared.http.ErrorBody``), so the document cannot drift from what the API accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.receiver.metadata import NewSubmission
from shared.http import ErrorBody
from shared.openapi import parameter

REF = "#/components/schemas/{model}"
TITLES = {
    400: "Malformed: not JSON, a bad range or header.",
    401: "Missing or invalid bearer token.",
    403: "The token's region may not open a submission for the region named.",
    404: "No such submission (or file) visible to this token: another region's is answered the same.",
    409: "Conflicts with the submission's state: sealed, incomplete, a concurrent upload, an offset mismatch.",
    411: "A PUT without Content-Length.",
    413: "Larger than the receiver accepts.",
    415: "A Content-Encoding on a PUT.",
    422: "Refused metadata, file name, registration or checksum; names the field.",
    503: "Every upload slot is taken, or the event could not be sent; try again.",
}


def _ref(model: type[BaseModel] | str) -> dict[str, Any]:
    return {"$ref": REF.format(model=model if isinstance(model, str) else model.__name__)}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": TITLES[s], "content": {"application/json": {"schema": _ref(ErrorBody)}}}
        for s in (401, *statuses)
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_FILE = {
    "type": "object",
    "required": ["name", "role", "complete"],
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string"},
        "complete": {"type": "boolean"},
        "url": {"type": "string"},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "md5": {"type": "string"},
        "deduplicated": {"type": "boolean"},
        "arrived": {"type": "integer"},
    },
}
_OPENED = {
    "type": "object",
    "required": ["submission_id", "trace_id", "files"],
    "properties": {
        "submission_id": {"type": "string"},
        "trace_id": {"type": ["string", "null"]},
        "files": {"type": "array", "items": _FILE},
    },
}
_SHOWN = {
    "type": "object",
    "required": ["submission_id", "region", "sample_id", "analysis_type", "sealed_at", "event_id", "files"],
    "properties": {
        "submission_id": {"type": "string"},
        "region": {"type": "string"},
        "sample_id": {"type": "string"},
        "analysis_type": {"type": "string"},
        "sealed_at": {"type": ["string", "null"]},
        "event_id": {"type": ["string", "null"]},
        "files": {"type": "array", "items": _FILE},
    },
}
_SEALED = {
    "type": "object",
    "required": ["submission_id", "event_id", "received_at", "files"],
    "properties": {
        "submission_id": {"type": "string"},
        "event_id": {"type": "string"},
        "received_at": {"type": "string"},
        "files": {"type": "array", "items": _FILE},
    },
}
_REGISTRATION = {
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
_ID = parameter("id", {"type": "string"}, "Submission id.", "path")
_NAME = parameter("name", {"type": "string"}, "File name.", "path")


def document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(NewSubmission, "validation"), (ErrorBody, "serialization")], ref_template=REF
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "genomhub receiver",
            "version": "1.0.0",
            "description": "Where the regions send genome files: open a submission with its metadata, send "
            "each file (resumable), seal it. A region's token acts for its own region; ngc's for all.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/submissions": {
                "post": {
                    "operationId": "openSubmission",
                    "summary": "Open a submission; the same Idempotency-Key with the same metadata answers the first.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(NewSubmission)}},
                    },
                    "responses": {
                        "201": _ok("Opened.", _OPENED),
                        "200": _ok("Opened before with this Idempotency-Key and this metadata.", _OPENED),
                        **_errors(400, 403, 413, 422),
                    },
                }
            },
            "/v1/submissions/{id}": {
                "get": {
                    "operationId": "showSubmission",
                    "summary": "What has arrived.",
                    "parameters": [_ID],
                    "responses": {"200": _ok("The submission.", _SHOWN), **_errors(404)},
                }
            },
            "/v1/submissions/{id}/files/{name}": {
                "head": {
                    "operationId": "fileOffset",
                    "summary": "How much of the file has arrived (Upload-Offset, Upload-Complete).",
                    "parameters": [_ID, _NAME],
                    "responses": {
                        "200": {"description": "Upload-Offset and Upload-Complete."},
                        **_errors(404, 422),
                    },
                },
                "put": {
                    "operationId": "uploadFile",
                    "summary": "The file's bytes, whole or from Upload-Offset / a Content-Range.",
                    "parameters": [
                        _ID,
                        _NAME,
                        {
                            "name": "Upload-Offset",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "Content-Range",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "responses": {
                        "200": _ok("The file is complete.", _FILE),
                        "202": _ok(
                            "A piece arrived.",
                            {"type": "object", "required": ["name", "complete", "arrived"]},
                        ),
                        **_errors(400, 404, 409, 411, 413, 415, 422, 503),
                    },
                },
            },
            "/v1/submissions/{id}/register": {
                "post": {
                    "operationId": "registerFiles",
                    "summary": "Copy declared files from the region's inbox.",
                    "parameters": [_ID],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _REGISTRATION}},
                    },
                    "responses": {
                        "200": _ok(
                            "Copied.",
                            {"type": "object", "required": ["submission_id", "files"]},
                        ),
                        **_errors(400, 404, 409, 413, 422),
                    },
                }
            },
            "/v1/submissions/{id}/seal": {
                "post": {
                    "operationId": "sealSubmission",
                    "summary": "Every file complete: emit file-received, once; a later seal answers the same.",
                    "parameters": [_ID],
                    "responses": {"200": _ok("Sealed.", _SEALED), **_errors(404, 409, 503)},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": defs["$defs"],
        },
    }
