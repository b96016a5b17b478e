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

from services.receiver.api import document
from tests.conformance import AS_DOCUMENTED, call_and_validate, generated
from tests.integration.receiver.conftest import TOKENS, Receiver

schema = schemathesis.openapi.from_dict(document())


@pytest.mark.parametrize("holder", ["hovedstaden", "ngc"])
@schema.parametrize()
@generated(max_examples=8)
def test_receiver_conforms_to_its_openapi_document(case: Any, holder: str, file_receiver: Receiver) -> None:
    call_and_validate(case, file_receiver.url, TOKENS[holder], checks=AS_DOCUMENTED)


def test_the_served_document_is_the_one_tested(file_receiver: Receiver) -> None:
    served = requests.get(file_receiver.url + "/openapi.json", timeout=10)
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(document()))
