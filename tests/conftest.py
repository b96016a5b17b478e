"""Fixtures shared by every test folder: one real Kafka broker and one S3 server per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from shared.config import StateSettings, TopicSettings
from shared.encryption import ArchiveKey, load_archive_key, write_key_pair
from shared.feed import write_hub_key_pair
from shared.headers import HeaderStore
from shared.storage import ArchiveWriter
from tests.support import ARCHIVE_PASSPHRASE, free_port


@pytest.fixture(scope="session", autouse=True)
def genomhub_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's state folder, holding its archive key where every service started in the
    session looks by default (``<home>/keys``), unlocked by the passphrase in the environment,
    and the hub's signing key.

    Every test has it, whether it asks or not: a test that builds a service without asking
    would otherwise find the home an earlier test happened to set up, or none (and then the
    checkout's own ``.genomhub``), as the order of a run decides."""
    home = tmp_path_factory.mktemp("genomhub-home")
    os.environ["GENOMHUB_HOME"] = str(home)
    os.environ["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"] = ARCHIVE_PASSPHRASE
    write_key_pair(home / "keys", ARCHIVE_PASSPHRASE)
    # One hub signing key for the session, named outright so that a stack started under
    # another home signs the session broker's feeds with it too: a feed is one key's.
    os.environ["GENOMHUB_HUB_KEY_PASSPHRASE"] = ARCHIVE_PASSPHRASE
    secret, public = write_hub_key_pair(home / "keys", ARCHIVE_PASSPHRASE)
    os.environ["GENOMHUB_HUB_SECRET_KEY"], os.environ["GENOMHUB_HUB_PUBLIC_KEY"] = str(secret), str(public)
    os.environ["GENOMHUB_SPOKE_HUB_PUBLIC_KEY"] = str(public)
    return home


@pytest.fixture(scope="session")
def archive_key(genomhub_home: Path) -> ArchiveKey:
    keys = genomhub_home / "keys"
    return load_archive_key(keys / "archive.sec", keys / "archive.pub", ARCHIVE_PASSPHRASE)


@pytest.fixture
def archive_writer(
    archive_key: ArchiveKey, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> ArchiveWriter:
    """A writer into an archive at ``tmp_path``, its headers in a folder of their own."""
    headers = tmp_path_factory.mktemp("headers")
    return ArchiveWriter(archive_key.public, HeaderStore(tmp_path.as_uri(), headers.as_uri()), archive_key)


@pytest.fixture(scope="session")
def kafka_bootstrap(genomhub_home: Path) -> Iterator[str]:
    """A real single-node KRaft broker on loopback with authentication and ACLs on, the
    registered topics created; tests reach it through ``tests.support.kafka``.

    The session is a local stack: like ``tools.stack``, it hands the processes it starts
    (through ``os.environ``) the broker's address and the synthetic reference."""
    from tools.kafka.broker import LocalBroker
    from tools.stack.environment import StackSettings

    broker = LocalBroker(genomhub_home, StateSettings().cache, TopicSettings().partitions)
    state, took = broker.start()
    print(f"\nkafka broker ready at {state.bootstrap} in {took:.1f} s")
    os.environ["GENOMHUB_KAFKA_BOOTSTRAP"] = state.bootstrap
    os.environ.setdefault("GENOMHUB_REFERENCE_FASTA", str(StackSettings().reference()))
    try:
        yield state.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on loopback, with the buckets the tests write: the
    receiver's ``archive`` and ``inbox``, the archive's cold tier ``tape``."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for bucket in ("archive", "inbox", "tape"):
        s3.create_bucket(Bucket=bucket)
    try:
        yield endpoint
    finally:
        server.stop()
