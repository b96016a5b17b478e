"""The receiver's OpenAPI document against the real receiver process, with schemathesis.

Generated requests, valid and invalid, with a region's token and the national operator's:
none is answered 5xx, every status is documented, every error is the one error body.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.receiver.openapi import document
from tests.integration.receiver.conftest import TOKENS, Receiver

schema = schemathesis.openapi.from_dict(document())


@pytest.mark.parametrize("holder", ["hovedstaden", "ngc"])
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_receiver_conforms_to_its_openapi_document(case: Any, holder: str, file_receiver: Receiver) -> None:
    case.call_and_validate(
        base_url=file_receiver.url,
        headers={"Authorization": f"Bearer {TOKENS[holder]}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_the_served_document_is_the_one_tested(file_receiver: Receiver) -> None:
    served = requests.get(file_receiver.url + "/openapi.json", timeout=10)
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(document()))
