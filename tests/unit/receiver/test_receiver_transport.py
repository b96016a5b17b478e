"""Which receiver URLs `genomhub upload` will talk to, and how (services.receiver.client)."""

from __future__ import annotations

import ssl

import pytest

from services.receiver.client import UploadError, loopback, transport_security


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8480", "http://127.5.6.7", "http://localhost:8480", "http://[::1]:8480"]
)
def test_plain_http_is_allowed_to_loopback_only(url: str) -> None:
    assert transport_security(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://receiver.ngc.example",
        "http://10.0.0.5:8480",
        "http://0.0.0.0:8480",
        "http://localhost.ngc.example",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:10.0.0.1]",
    ],
)
def test_plain_http_elsewhere_is_refused(url: str) -> None:
    with pytest.raises(UploadError, match="refusing plain http://"):
        transport_security(url)


@pytest.mark.parametrize("url", ["ftp://receiver", "receiver.ngc.example", "https://", "file:///x"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(UploadError):
        transport_security(url)


def test_https_verifies_the_server_and_its_name() -> None:
    context = transport_security("https://receiver.ngc.example")
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_loopback_names() -> None:
    assert loopback("LOCALHOST") and loopback("127.0.0.1") and loopback("::1")
    assert not loopback("localhost.example") and not loopback("192.168.1.1") and not loopback("")
