"""schemathesis against a genomhub API as it is served, with a bearer token: the one way the
receiver's, the catalogue's and billing's conformance tests run their generated requests."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    CheckFunction,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

AS_DOCUMENTED: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
"""No 5xx, and every status, media type and body one that the document names."""


def generated(max_examples: int) -> settings:
    """Hypothesis settings for a conformance test: the same examples on every run, and no
    deadline or health check, since each example is a request to a real server."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )


def call_and_validate(
    case: Any,
    base_url: str,
    token: str,
    *,
    checks: list[CheckFunction] | None = None,
    excluded_checks: list[CheckFunction] | None = None,
) -> None:
    """Send the generated ``case`` to the API served at ``base_url`` with ``token`` as its
    bearer, and check the answer: with ``checks`` only those, else schemathesis' built-in
    checks but ``excluded_checks``."""
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        checks=checks,
        excluded_checks=excluded_checks,
    )
