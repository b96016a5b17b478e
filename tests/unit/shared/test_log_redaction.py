"""Logs are redacted in one place (``shared.telemetry``): structlog lines and stdlib records
alike never carry a bearer token, an Authorization or Cookie header, or a CPR number."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import telemetry

tokens = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N")) | st.sampled_from("-._~+/="), min_size=8
)
CPRS = ["0703851234", "070385-1234", "290200-4321"]


@pytest.fixture(autouse=True)
def configured() -> None:
    telemetry.setup("redaction-test")


def carriers(scheme: str, token: str) -> list[str]:
    return [
        f"Authorization: {scheme} {token}",
        f"b'{scheme} {token}'",
        f"headers={{'Authorization': '{scheme} {token}'}}",
        f'{{"authorization": "{scheme} {token}"}}',
        f"Cookie: session={token}; other=1",
        f"cookie={token}",
    ]


@given(tokens, st.sampled_from(["Bearer", "bearer", "BEARER", "Basic"]))
def test_no_credential_survives_redaction(token: str, scheme: str) -> None:
    """Nothing of the token is left: the redacted line is the same whatever the token was."""
    other = "Z" * len(token) if token != "Z" * len(token) else "Y" * len(token)
    for text, control in zip(carriers(scheme, token), carriers(scheme, other), strict=True):
        redacted = telemetry.redact_text(text)
        assert redacted == telemetry.redact_text(control), text
        if token not in control.replace(other, ""):  # a token such as 'Authoriz' is in the line's own words
            assert token not in redacted, text


@pytest.mark.parametrize("cpr", CPRS)
def test_a_cpr_goes_with_its_line_and_the_rest_stays(cpr: str) -> None:
    text = f"Traceback (most recent call last):\n  path=/v1/submissions/x/files/{cpr}_R1.fastq.gz\nValueError: bad"
    redacted = telemetry.redact_text(text)
    assert cpr not in redacted and "ValueError: bad" in redacted and "Traceback" in redacted


def test_structlog_lines_are_redacted(capfd: pytest.CaptureFixture[str]) -> None:
    log = telemetry.get_logger("test")
    log.info(
        "request",
        path=f"/v1/samples/{CPRS[0]}",
        authorization="Bearer abcdefgh123",
        headers={"Cookie": "a=b"},
    )
    try:
        raise ValueError(f"Authorization: Bearer s3cr3t-token for {CPRS[1]}")
    except ValueError:
        log.exception("failed")
    out = capfd.readouterr().err
    lines = [json.loads(line) for line in out.splitlines()]
    assert (
        lines[0]["authorization"] == telemetry.REDACTED
        and lines[0]["headers"]["Cookie"] == telemetry.REDACTED
    )
    assert "ValueError" in lines[1]["exception"]
    for secret in (CPRS[0], CPRS[1], "abcdefgh123", "s3cr3t-token"):
        assert secret not in out


def test_stdlib_records_are_redacted_whoever_formats_them(capfd: pytest.CaptureFixture[str]) -> None:
    stream_logger = logging.getLogger("aiohttp.server.redaction-test")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    stream_logger.addHandler(handler)
    try:
        stream_logger.warning("header %s refused for %s", "Authorization: Bearer tok-123456789", CPRS[2])
        try:
            raise RuntimeError("Got more than 8190 bytes when reading: b'Bearer tok-abcdefghij...'")
        except RuntimeError:
            stream_logger.exception("Error handling request")
    finally:
        stream_logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert "Error handling request" in err and "RuntimeError" in err
    for secret in ("tok-123456789", "tok-abcdefghij", CPRS[2]):
        assert secret not in err


@pytest.mark.parametrize(
    "line",
    [
        "2026-12-02T21:24:05.123456Z",  # 2405123456 reads as a CPR number of 24 May 1905
        '{"timestamp": "2026-03-07T07:03:85", "event": "accrued"}',
        "took 0.0703851234 s",
        "trace_id=4bf92f3577b34da6a3ce920703851234 span 00f0670703851234",
        "21:24:05.1234567 job claimed",
    ],
)
def test_a_logs_own_numbers_are_not_taken_for_a_cpr(line: str) -> None:
    """Timestamps, clock times, durations and hex ids stay: a log whose timestamp vanished
    now and then could not be read in order, and an operator would stop trusting it."""
    assert telemetry.redact_text(line) == line


@pytest.mark.parametrize(
    "line",
    [
        f"2026-12-02T21:24:05.123456Z rejected {CPRS[0]}",
        f"size={CPRS[0]}",  # a plain integer may be a region's value: always checked
        "sample 070385.1234 refused",  # a CPR number typed with a dot
        f"offset 12 lag 3 {CPRS[1]}",
    ],
)
def test_a_cpr_beside_a_logs_numbers_still_goes(line: str) -> None:
    assert telemetry.redact_text(line) == telemetry.CPR_REDACTED


def test_stdlib_logging_set_up_under_a_replaced_stderr_writes_to_the_process_own(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command run under a test's CliRunner sets logging up while ``sys.stderr`` is the
    runner's stream, closed once the command returns; a library logging later (Alembic at a
    migration) must still reach the process's standard error, not fail on the closed stream
    and print its "Logging error" into whatever output is being read then."""
    replaced = io.StringIO()
    monkeypatch.setattr(sys, "stderr", replaced)
    monkeypatch.setattr(telemetry, "_configured", None)
    telemetry.setup("replaced-stderr-test")
    replaced.close()
    reading = io.StringIO()  # what a later command's runner reads
    monkeypatch.setattr(sys, "stderr", reading)
    logging.getLogger("alembic.runtime.migration").warning("Will assume non-transactional DDL.")
    assert "Logging error" not in reading.getvalue()
    assert "Will assume non-transactional DDL." in capfd.readouterr().err
