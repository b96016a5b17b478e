"""Receivers as real processes (`genomhub run receiver`) on the real broker, and an S3 server.

Two receivers per session: one archiving to ``file://``, one to ``s3://`` on moto's
standalone server on loopback. Each has its own SQLite state and region inbox, bearer
tokens configured as hashes, and a 64 MB size limit so that 413 can be shown cheaply; the S3
receiver sends parts of 5 MiB, S3's smallest, so a test file spans several.
"""

from __future__ import annotations

import io
import json
import signal
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.auth import token_hash
from shared.config import ArchiveKeySettings, ArchiveSettings
from shared.encryption import BodyDecryptor, body_size, check_archive_key, whole_segments_stored
from shared.events import FileReceived
from shared.headers import HeaderStore
from shared.storage import open_archived, use_s3_endpoint
from shared.topics import topic_name
from tests.postgres import engine_urls, postgres_server
from tests.support import Process, free_port, genomhub, records

__all__ = ["postgres_server"]

TOKENS = {"hovedstaden": "tok-hovedstaden-1f3a", "sjaelland": "tok-sjaelland-77c0", "ngc": "tok-ngc-a9e2"}
MAX_FILE_SIZE = 64 << 20
S3_PART_SIZE = 5 << 20
"""S3's smallest part: the s3:// receiver's uploads have many parts at test sizes."""
TOPIC = topic_name(FileReceived)

receiver_url = engine_urls("receiver")
"""An empty database for the receivers of a test: once on SQLite, once on PostgreSQL."""


@dataclass
class Receiver:
    """One receiver process; ``restart`` keeps its state folder, store and port."""

    port: int
    env: dict[str, str]
    log: Path
    store: str
    inbox: str
    process: Process | None = None
    ca: Path | None = None
    """The CA of the certificate the receiver serves TLS with; None: plain HTTP on loopback."""

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self.process = Process(genomhub("run", "receiver"), self.log, self.env).start()
        tls = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        self.process.wait_http(self.port, timeout=90, tls=tls)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(
        self, method: str, path: str, holder: str | None = "hovedstaden", **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if holder is not None:
            headers["Authorization"] = f"Bearer {TOKENS[holder]}"
        verify = str(self.ca) if self.ca else True
        return requests.request(method, self.url + path, headers=headers, timeout=60, verify=verify, **kwargs)

    def cli_env(self, holder: str = "hovedstaden") -> dict[str, str]:
        return {**self.env, "GENOMHUB_UPLOAD_TOKEN": TOKENS[holder]}

    @property
    def headers(self) -> HeaderStore:
        """The receiver's header store (the session's default, ``<home>/headers``)."""
        return HeaderStore(self.store, ArchiveSettings().header_store_url)

    def archived(self, url: str, size: int) -> bytes:
        """The plaintext of a file the receiver archived, read as every service reads it."""
        use_s3_endpoint(self.env.get("GENOMHUB_S3_ENDPOINT_URL"))
        with open_archived(url, size, self.headers, check_archive_key(ArchiveKeySettings())) as archived:
            return archived.read()

    def stored_prefix(self, partial: Path) -> bytes:
        """The plaintext of the whole segments a local file in transit holds (what a resume
        keeps), each authenticated."""
        have = whole_segments_stored(partial.stat().st_size)
        body = io.BytesIO(partial.read_bytes()[: body_size(have)])
        header = self.headers.read(partial.as_uri())
        return BodyDecryptor(header, body, check_archive_key(ArchiveKeySettings()), have).read()


def metadata(sample: str, names: list[str], region: str = "hovedstaden", **extra: Any) -> dict[str, Any]:
    return {
        "region": region,
        "department": "Rigshospitalet",
        "sample_id": sample,
        "patient_id": f"P-{sample}",
        "analysis_type": "WGS",
        "platform": "ILLUMINA",
        "files": [{"name": n, "role": "raw_reads"} for n in names],
    } | extra


def events_of(bootstrap: str, submission_id: str) -> list[Any]:
    """The file-received records whose CloudEvents subject is ``submission_id``."""
    return [
        r for r in records(bootstrap, TOPIC) if dict(r.headers).get("ce_subject") == submission_id.encode()
    ]


def _receiver(tmp: Path, name: str, store: str, inbox: str, extra: dict[str, str]) -> Receiver:
    port = free_port()
    env = {
        "GENOMHUB_RECEIVER_PORT": str(port),
        "GENOMHUB_TOKENS": json.dumps({token_hash(t): holder for holder, t in TOKENS.items()}),
        "GENOMHUB_STORE": store,
        "GENOMHUB_RECEIVER_DATABASE_URL": f"sqlite:///{tmp / f'{name}.db'}",
        "GENOMHUB_RECEIVER_MAX_FILE_SIZE": str(MAX_FILE_SIZE),
        "GENOMHUB_RECEIVER_INBOXES": json.dumps({"hovedstaden": inbox}),
        "GENOMHUB_RECEIVER_IDLE_TIMEOUT": "20",
        **extra,
    }
    return Receiver(port, env, tmp / f"{name}.log", store, inbox)


@pytest.fixture(scope="session")
def file_receiver(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    tmp = tmp_path_factory.mktemp("receiver-file")
    inbox, neighbour = tmp / "inbox" / "hovedstaden", tmp / "inbox" / "sjaelland"
    inbox.mkdir(parents=True)
    neighbour.mkdir()
    inboxes = {
        "GENOMHUB_RECEIVER_INBOXES": json.dumps(
            {"hovedstaden": inbox.as_uri(), "sjaelland": neighbour.as_uri()}
        )
    }
    receiver = _receiver(tmp, "receiver-file", (tmp / "store").as_uri(), inbox.as_uri(), inboxes)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="session")
def s3_receiver(
    kafka_bootstrap: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Receiver]:
    tmp = tmp_path_factory.mktemp("receiver-s3")
    aws = {
        "GENOMHUB_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GENOMHUB_RECEIVER_S3_PART_SIZE": str(S3_PART_SIZE),
    }
    receiver = _receiver(tmp, "receiver-s3", "s3://archive/genomes", "s3://inbox/hovedstaden", aws)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
