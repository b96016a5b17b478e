"""Fixtures shared by every test folder: one real Kafka broker per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import StateSettings, TopicSettings


@pytest.fixture(scope="session")
def genomhub_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("genomhub-home")
    os.environ["GENOMHUB_HOME"] = str(home)
    return home


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
