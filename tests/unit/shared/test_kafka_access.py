"""The client factory: whose credentials a process uses, and where it refuses to go."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.bus import Service
from shared.config import KafkaSettings, StateSettings, ValidatorSettings
from shared.events import EVENT_MODELS
from shared.kafka import Credentials, KafkaAccessError, credentials_dir, kafka_access, write_credentials
from shared.topics import (
    CLIENT_PRINCIPALS,
    EMITS,
    FEED_WRITER,
    PUBLISHER_TRANSACTIONAL_ID,
    SUBSCRIPTIONS,
    all_topics,
    consumer_group,
    dlq_name,
    emitter_of,
    grants_of,
    spoke_feeds,
    topic_name,
)
from tests.unit.indexer.factories import harmonised, submission
from tools.kafka.broker import BrokerError, LocalBroker


def settings(**values: object) -> KafkaSettings:
    return KafkaSettings(bootstrap="127.0.0.1:9092", **values)  # type: ignore[arg-type]


def test_each_principal_uses_the_password_the_local_broker_wrote_for_it(tmp_path: Path) -> None:
    path = write_credentials(
        credentials_dir(tmp_path), "validator", Credentials("genomhub-validator", "s3cret")
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    access = kafka_access("validator", settings(), StateSettings(home=tmp_path))
    assert access.credentials == Credentials("genomhub-validator", "s3cret")
    options = access.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "genomhub-validator",
        "s3cret",
    )
    assert "s3cret" not in repr(access)
    with pytest.raises(KafkaAccessError, match="no Kafka credentials for indexer"):
        kafka_access("indexer", settings(), StateSettings(home=tmp_path))
    path.chmod(0o640)
    with pytest.raises(KafkaAccessError, match="readable by other users"):
        kafka_access("validator", settings(), StateSettings(home=tmp_path))


def test_the_environment_names_the_user_in_a_cluster(tmp_path: Path) -> None:
    cluster = KafkaSettings(
        bootstrap="genomhub-kafka-bootstrap:9093",
        security_protocol="SASL_SSL",
        username="genomhub-indexer",
        password=SecretStr("from-strimzi"),
    )
    access = kafka_access("indexer", cluster)
    assert access.credentials == Credentials("genomhub-indexer", "from-strimzi")
    assert access.security_protocol == "SASL_SSL"
    assert access.client_options()["ssl_context"] is not None
    with pytest.raises(KafkaAccessError, match="GENOMHUB_KAFKA_PASSWORD is not"):
        kafka_access("indexer", cluster.model_copy(update={"password": None}))


@pytest.mark.parametrize(
    "bootstrap", ["10.0.0.5:9092", "kafka.example.org:9092", "127.0.0.1:9092,broker-2:9092"]
)
def test_plain_transport_is_refused_off_loopback(tmp_path: Path, bootstrap: str) -> None:
    remote = KafkaSettings(bootstrap=bootstrap, username="u", password=SecretStr("p"))
    with pytest.raises(KafkaAccessError, match="refusing SASL_PLAINTEXT"):
        kafka_access("validator", remote)


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "localhost:9092", "[::1]:9092", "127.0.0.2:1"])
def test_plain_transport_is_allowed_on_loopback(tmp_path: Path, bootstrap: str) -> None:
    local = KafkaSettings(bootstrap=bootstrap, username="u", password=SecretStr("p"))
    assert kafka_access("validator", local).bootstrap == bootstrap


def test_only_registered_principals_get_clients(tmp_path: Path) -> None:
    with pytest.raises(KafkaAccessError, match="unknown Kafka principal"):
        kafka_access("probe", settings(username="u", password=SecretStr("p")))


def test_a_service_writes_only_what_it_emits_and_its_dead_letters() -> None:
    for service in SUBSCRIPTIONS:
        consumed = {topic_name(m) for m in SUBSCRIPTIONS[service]}
        grants = grants_of(service)
        written = {
            g.name
            for g in grants
            if g.resource == "topic" and g.pattern == "literal" and "Write" in g.operations
        }
        read = {
            g.name
            for g in grants
            if g.resource == "topic" and g.pattern == "literal" and "Read" in g.operations
        }
        # The publisher alone writes the spokes' feeds, reads them back (its state), in
        # transactions under its own id, and reads its subscriptions in no group.
        feeds = {t.name for t in spoke_feeds(1)} if service == FEED_WRITER else set()
        assert written == {topic_name(m) for m in EMITS[service]} | {dlq_name(t) for t in consumed} | feeds
        assert read == consumed | feeds
        groups = {g.name for g in grants if g.resource == "group"}
        assert groups == (set() if service == FEED_WRITER else {consumer_group(service)})
        assert not [g for g in grants if g.pattern == "prefix"], "a service creates no topics of its own"
        transactional = {g.name for g in grants if g.resource == "transactionalId"}
        assert transactional == ({PUBLISHER_TRANSACTIONAL_ID} if service == FEED_WRITER else set())


def test_every_event_has_exactly_one_emitter_and_every_topic_a_reader() -> None:
    assert sorted(m.event_name for ms in EMITS.values() for m in ms) == sorted(
        m.event_name for m in EVENT_MODELS
    )
    for model in EVENT_MODELS:
        assert model in EMITS[emitter_of(model)]
    registered = {t.name for t in all_topics(1)}
    for principal in CLIENT_PRINCIPALS:
        for grant in grants_of(principal):
            if grant.resource == "topic" and grant.pattern == "literal":
                assert grant.name in registered, (principal, grant)


ROOT = Path(__file__).resolve().parents[3]
CONSTRUCTORS = re.compile(r"\b(AIOKafkaProducer|AIOKafkaConsumer|AIOKafkaAdminClient|AIOKafkaClient)\(")


def test_no_module_but_the_factory_constructs_a_kafka_client() -> None:
    """Every client carries its principal's credentials because only shared/kafka.py makes one."""
    makers = [
        str(path.relative_to(ROOT))
        for folder in ("shared", "services", "tools", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if CONSTRUCTORS.search(path.read_text()) and path != ROOT / "shared" / "kafka.py"
    ]
    assert makers == []


def test_a_service_emits_only_its_registered_events() -> None:
    offline = KafkaSettings(bootstrap="127.0.0.1:9", username="unused", password=SecretStr("unused"))
    service = Service("validator", ValidatorSettings(kafka=offline))
    with pytest.raises(ValueError, match="validator is not registered to emit harmonised"):
        asyncio.run(service.emit(harmonised(submission()), event_id="x"))


def test_a_broker_formatted_before_its_users_existed_is_refused(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, tmp_path / "cache")
    (broker.dir / "data").mkdir(parents=True)
    (broker.dir / "data" / "meta.properties").write_text("version=1\n")
    with pytest.raises(BrokerError, match="has no credentials for access, admin, archive, billing"):
        broker._write_config(1, 2)
