"""The broker lets each principal do what the registry grants and nothing else.

Real broker, real credentials: the ones a local broker generated at format time. This
module runs a broker of its own, since probing write rights writes records, which the
session broker's other suites should not see. Anonymous clients and wrong passwords do not
get in; a service's credentials write only its own topics and the dead-letter topics of
what it consumes, read only its subscriptions, and use only its own consumer group; users
and ACLs survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from shared.config import StateSettings
from shared.events import Harmonised, Region
from shared.kafka import Credentials, KafkaAccess
from shared.topics import (
    ADMIN,
    CLIENT_PRINCIPALS,
    EMITS,
    FEED_WRITER,
    FINANCE,
    OPERATOR,
    PUBLISHER_TRANSACTIONAL_ID,
    SPOKE,
    SUBSCRIPTIONS,
    all_topics,
    consumed_topics,
    consumer_group,
    dlq_name,
    feed_topic,
    kafka_user,
    spoke_feeds,
    spoke_principal,
    topic_name,
)
from tests.support import anonymous
from tools.kafka.acls import broker_acls, sync_acls, wanted_acls
from tools.kafka.broker import LocalBroker

TOPICS = [t.name for t in all_topics(1)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    local = LocalBroker(tmp_path_factory.mktemp("auth-home"), StateSettings().cache, topic_partitions=1)
    local.start()
    asyncio.run(_writable(local.access(ADMIN), TOPICS))  # one record on each topic, to be read
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def rights(broker: LocalBroker) -> dict[str, tuple[set[str], set[str]]]:
    """What each service, finance and the operators may write and read, probed for all of
    them at once: a refused read waits out its timeout, so they wait it out together
    rather than one after another."""
    principals = [*SUBSCRIPTIONS, spoke_principal(Region.SYDDANMARK), FINANCE, OPERATOR]

    async def probe(principal: str) -> tuple[set[str], set[str]]:
        access = broker.access(principal)
        written, read = await asyncio.gather(_writable(access, TOPICS), _readable(access, TOPICS))
        return written, read

    async def probe_all() -> list[tuple[set[str], set[str]]]:
        return await asyncio.gather(*(probe(p) for p in principals))

    return dict(zip(principals, asyncio.run(probe_all()), strict=True))


@pytest.fixture(scope="module")
def bootstrap(broker: LocalBroker) -> str:
    state = broker.running()
    assert state is not None
    return state.bootstrap


async def _send(access: KafkaAccess, topic: str) -> None:
    producer = access.producer(request_timeout_ms=10000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"probe": true}', key=b"auth-probe")
    finally:
        await producer.stop()


async def _writable(access: KafkaAccess, topics: list[str]) -> set[str]:
    """Which of ``topics`` the broker lets ``access`` write (one producer, one record each)."""
    producer = access.producer(request_timeout_ms=10000)
    await producer.start()
    allowed = set()
    try:
        for topic in topics:
            try:
                await producer.send_and_wait(topic, b'{"probe": true}', key=b"auth-probe")
                allowed.add(topic)
            except TopicAuthorizationFailedError:
                pass
    finally:
        await producer.stop()
    return allowed


async def _reads(access: KafkaAccess, topic: str, timeout: float) -> bool:
    """Whether ``access`` gets the record the admin put on ``topic`` (no group)."""
    consumer = access.consumer(enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                if any((await consumer.getmany(timeout_ms=500)).values()):
                    return True
            except TopicAuthorizationFailedError:
                return False
        return False
    finally:
        await consumer.stop()


async def _readable(access: KafkaAccess, topics: list[str], timeout: float = 20.0) -> set[str]:
    """Which of ``topics`` the broker lets ``access`` fetch from.

    A read the broker lets through ends as soon as its record arrives; a refused one is seen
    only as the record not arriving within the timeout (the broker hides a topic's metadata
    from a principal that may not read it, and the client waits for it in silence). The
    timeout is long enough for an allowed read to arrive while every principal probes every
    topic at once on a machine another test session shares (6 s was not: each read then came
    up empty)."""
    found = await asyncio.gather(*(_reads(access, t, timeout) for t in topics))
    return {t for t, ok in zip(topics, found, strict=True) if ok}


async def _commit_as(access: KafkaAccess, group: str, topic: str) -> None:
    consumer = access.consumer(group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()


def test_the_validator_cannot_write_harmonised(broker: LocalBroker) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_send(broker.access("validator"), topic_name(Harmonised)))


def test_an_anonymous_client_cannot_connect_or_produce(bootstrap: str) -> None:
    with pytest.raises(KafkaConnectionError):
        asyncio.run(asyncio.wait_for(_send(anonymous(bootstrap), topic_name(Harmonised)), 30))


def test_a_wrong_password_is_refused(bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    wrong = KafkaAccess(bootstrap, "validator", Credentials(kafka_user("validator"), uuid.uuid4().hex))
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(asyncio.wait_for(_send(wrong, topic_name(Harmonised)), 30))
    assert "SaslAuthenticationFailed" in caplog.text
    # A user that does not exist is refused the same way.
    nobody = KafkaAccess(bootstrap, "validator", Credentials("genomhub-nobody", uuid.uuid4().hex))
    with pytest.raises(KafkaConnectionError):
        asyncio.run(asyncio.wait_for(_send(nobody, topic_name(Harmonised)), 30))


@pytest.mark.parametrize("service", list(SUBSCRIPTIONS))
def test_each_service_writes_and_reads_exactly_what_it_needs(
    rights: dict[str, tuple[set[str], set[str]]], service: str
) -> None:
    consumed = [topic_name(m) for m in SUBSCRIPTIONS[service]]
    feeds = {t.name for t in spoke_feeds(1)} if service == FEED_WRITER else set()  # the publisher's state
    may_write = {topic_name(m) for m in EMITS[service]} | {dlq_name(t) for t in consumed} | feeds
    written, read = rights[service]
    assert written == may_write
    assert read == set(consumed) | feeds


@pytest.mark.parametrize("service", [s for s in SUBSCRIPTIONS if SUBSCRIPTIONS[s]])
def test_each_service_uses_only_its_own_consumer_group(broker: LocalBroker, service: str) -> None:
    access = broker.access(service)
    topic = topic_name(SUBSCRIPTIONS[service][0])
    other = next(s for s in SUBSCRIPTIONS if s != service)
    if service == FEED_WRITER:  # it reads its subscriptions whole, in no group: it has none
        with pytest.raises(GroupAuthorizationFailedError):
            asyncio.run(_commit_as(access, consumer_group(service), topic))
    else:  # its own group: the real consumer's commit, at the log start, changes nothing of note
        asyncio.run(_commit_as(access, f"{consumer_group(service)}", topic))
    with pytest.raises(GroupAuthorizationFailedError):
        asyncio.run(_commit_as(access, consumer_group(other), topic))


def test_a_spoke_reads_the_feeds_and_writes_only_its_acknowledgements(
    rights: dict[str, tuple[set[str], set[str]]],
) -> None:
    """One registry on every broker: on its own a spoke reads its region's feed (another
    region's holds that region's records whole); on the hub's it writes that it shows a
    revision, and nothing else."""
    own = spoke_principal(Region.SYDDANMARK)
    assert rights[own] == ({topic_name(*EMITS[SPOKE])}, {feed_topic(Region.SYDDANMARK)})


def test_operators_and_finance_have_their_own_narrow_rights(
    rights: dict[str, tuple[set[str], set[str]]],
) -> None:
    # finance publishes a month's refunds, and nothing else
    assert rights[FINANCE] == ({topic_name(*EMITS["billing"])}, set())
    # the operators read everything (dead letters, replays) and write back only to the
    # topics a dead letter can be redriven to
    assert rights[OPERATOR] == (set(consumed_topics()), set(TOPICS))


def test_the_broker_holds_exactly_the_registry_grants(broker: LocalBroker) -> None:
    ours = {
        a for a in asyncio.run(broker_acls(broker.access(ADMIN))) if a.principal.startswith("User:genomhub-")
    }
    assert ours == wanted_acls()
    assert {a.principal for a in ours} == {f"User:{kafka_user(p)}" for p in CLIENT_PRINCIPALS if p != ADMIN}


def test_users_and_acls_survive_a_restart_and_a_sync_repairs_drift(broker: LocalBroker) -> None:
    admin = broker.access(ADMIN)
    # an ACL the registry does not grant (as if left from an older registry) is removed,
    # and a deleted grant comes back, on the next start
    extra = next(iter(wanted_acls()))
    stray = type(extra)(2, "genomhub.harmonised.v1", 3, "User:genomhub-validator", "*", 4, 3)
    assert stray not in wanted_acls()
    from tools.kafka.acls import _Create, _Delete

    async def drift() -> None:
        client = admin.client()
        await client.bootstrap()
        try:
            await client.send(client.get_random_node(), _Create([stray]))
            await client.send(client.get_random_node(), _Delete([extra]))
        finally:
            await client.close()

    asyncio.run(drift())
    ours = {a for a in asyncio.run(broker_acls(admin)) if a.principal.startswith("User:genomhub-")}
    assert stray in ours and extra not in ours
    broker.stop()
    broker.start()
    ours = {
        a for a in asyncio.run(broker_acls(broker.access(ADMIN))) if a.principal.startswith("User:genomhub-")
    }
    assert ours == wanted_acls()
    assert asyncio.run(sync_acls(broker.access(ADMIN))) == (set(), set())
    # the same credentials still work, with the same rights
    asyncio.run(_send(broker.access("validator"), topic_name(SUBSCRIPTIONS["harmoniser"][0])))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_send(broker.access("validator"), topic_name(Harmonised)))


def test_provision_is_idempotent_and_needs_the_admin(
    broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from services.cli import main

    state = broker.running()
    assert state is not None
    monkeypatch.setenv("GENOMHUB_HOME", str(broker.dir.parent))
    monkeypatch.setenv("GENOMHUB_KAFKA_BOOTSTRAP", state.bootstrap)
    done = CliRunner().invoke(main, ["kafka", "provision"])
    assert done.exit_code == 0, done.output
    assert "topics created: none; ACLs created: 0, deleted: 0" in done.output
    # a service's credentials cannot provision: the broker refuses the ACL requests
    validator = broker.access("validator")
    monkeypatch.setenv(
        "GENOMHUB_KAFKA_USERNAME", validator.credentials.username if validator.credentials else ""
    )
    monkeypatch.setenv(
        "GENOMHUB_KAFKA_PASSWORD", validator.credentials.password if validator.credentials else ""
    )
    refused = CliRunner().invoke(main, ["kafka", "provision"])
    assert refused.exit_code == 1
    assert "ClusterAuthorizationFailed" in refused.output


def output_of(service: str) -> str:
    """A topic ``service`` writes: the first event it emits, or for the publisher a feed."""
    return topic_name(EMITS[service][0]) if EMITS[service] else feed_topic(Region.SYDDANMARK)


async def _admin_rights(access: KafkaAccess, service: str) -> dict[str, bool]:
    """Which administrative acts the broker lets ``access`` do: each True is a hole."""
    from aiokafka.admin import NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from tools.kafka.acls import _Create

    other = next(s for s in SUBSCRIPTIONS if s != service)
    emitted = output_of(service)
    done: dict[str, bool] = {}
    admin = access.admin(request_timeout_ms=10000)
    await admin.start()
    try:
        for what, name in (
            ("create a stray topic", f"stray-{service}"),
            ("create a core-like topic", "genomhub.stray.v1"),
            ("create a topic in its own group's name", f"{consumer_group(service)}-stray"),
            ("create a topic in another service's group's name", f"{consumer_group(other)}-stray"),
        ):
            response = await admin.create_topics([NewTopic(name, 1, 1)])
            done[what] = all(error == 0 for _, error, *_ in response.topic_errors)
        response = await admin.delete_topics([emitted])
        done["delete its own output topic"] = all(error == 0 for _, error, *_ in response.topic_error_codes)
        try:
            described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, emitted)])
            done["describe a topic's configs"] = all(r[0] == 0 for d in described for r in d.resources)
        except Exception:  # an authorization error raised rather than returned
            done["describe a topic's configs"] = False
    finally:
        await admin.close()
    grant = type(next(iter(wanted_acls())))(2, emitted, 3, f"User:{kafka_user(other)}", "*", 4, 3)
    client = access.client()
    await client.bootstrap()
    try:
        created = await client.send(client.get_random_node(), _Create([grant]))
        done["grant another principal a write"] = all(code == 0 for code, _ in created.creation_responses)
    finally:
        await client.close()
    producer = access.producer(transactional_id=f"stray-{service}", request_timeout_ms=10000)
    try:
        await producer.start()
        done["use a transactional id"] = True
    except Exception:  # TransactionalIdAuthorizationFailed
        done["use a transactional id"] = False
    finally:
        await producer.stop()
    return done


@pytest.mark.parametrize("service", list(SUBSCRIPTIONS))
def test_a_service_cannot_administer_the_bus(broker: LocalBroker, service: str) -> None:
    """A compromised service creates, deletes or re-grants nothing, reads no configuration
    and opens no transaction: its rights are its topics and its group, nothing more."""
    rights = asyncio.run(_admin_rights(broker.access(service), service))
    assert not [what for what, allowed in rights.items() if allowed], rights
    assert output_of(service) in asyncio.run(_writable(broker.access(service), TOPICS))


def test_only_the_publisher_opens_the_feeds_transactions(broker: LocalBroker) -> None:
    """The feeds' writes are transactions under one id: the publisher's, which no other
    service may take (it could fence the publisher, or write a feed in its name)."""

    async def opens(service: str) -> bool:
        producer = broker.access(service).producer(
            transactional_id=PUBLISHER_TRANSACTIONAL_ID, request_timeout_ms=10000
        )
        try:
            await producer.start()
            return True
        except Exception:  # TransactionalIdAuthorizationFailed
            return False
        finally:
            await producer.stop()

    assert asyncio.run(opens(FEED_WRITER))
    assert not asyncio.run(opens("indexer"))
