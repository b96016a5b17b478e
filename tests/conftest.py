"""Fixtures shared by every test folder: one real Kafka broker per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import get_settings


@pytest.fixture(scope="session")
def genomhub_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("genomhub-home")
    os.environ["GENOMHUB_HOME"] = str(home)
    get_settings.cache_clear()
    return home


@pytest.fixture(scope="session")
def kafka_bootstrap(genomhub_home: Path) -> Iterator[str]:
    """A real single-node KRaft broker on loopback with authentication and ACLs on, the
    registered topics created; tests reach it through ``tests.support.kafka``."""
    from tools.kafka.broker import LocalBroker

    broker = LocalBroker(genomhub_home, get_settings().cache, get_settings().topic_partitions)
    state, took = broker.start()
    print(f"\nkafka broker ready at {state.bootstrap} in {took:.1f} s")
    os.environ["GENOMHUB_KAFKA_BOOTSTRAP"] = state.bootstrap
    get_settings.cache_clear()
    try:
        yield state.bootstrap
    finally:
        broker.stop()
