"""A single-node Apache Kafka broker in KRaft combined mode, on loopback, for local runs and
tests. The jars come from Maven Central through ``tools/kafka/pom.xml`` into a cache
outside git; the log directory and the record of the running broker live under
``<GENOMHUB_HOME>/kafka``. Other processes find the broker through that record
(:meth:`shared.config.Settings.bootstrap_servers`).

The broker authenticates every client and authorises every request. Its one client
listener speaks SASL/SCRAM-SHA-512 over plain TCP: acceptable only because it listens on
loopback, which no other machine reaches (Kubernetes uses TLS). At format time each principal
of the registry (``shared.topics``) gets a random password, stored readable by this user only
under ``<GENOMHUB_HOME>/kafka/credentials``, and its SCRAM credential goes into the metadata
log, so users survive restarts. The standard authorizer refuses whatever no ACL allows; the
broker's own principal (controller and inter-broker traffic, PLAIN on the controller
listener, whose only user it is) and the admin are super users. Each start, as the admin,
creates the registered topics and makes the ACLs equal to the registry's grants
(:mod:`tools.kafka.acls`): services create no topics of theirs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import subprocess
import time
import uuid
from base64 import b64encode, urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from shared.kafka import Credentials, KafkaAccess, credentials_dir, read_credentials, write_credentials
from shared.topics import ADMIN, BROKER, CLIENT_PRINCIPALS, SUPER_USERS, kafka_user
from tools.background import BackgroundProcess, free_port, pid_alive, port_free

KAFKA_VERSION = "4.3.1"
POM = Path(__file__).with_name("pom.xml")
LOG4J = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def new_cluster_id() -> str:
    """A KRaft cluster id: a random uuid in URL-safe base64, never starting with ``-``.

    The storage tool would read a leading ``-`` as an option (one id in 64); Kafka's own
    ``Uuid.randomUuid`` skips those ids for the same reason.
    """
    while (cluster_id := urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id


SCRAM_ITERATIONS = 4096
SCRAM_PRINCIPALS = (*CLIENT_PRINCIPALS, BROKER)


def new_password() -> str:
    return secrets.token_urlsafe(32)


def scram_credential(credentials: Credentials, iterations: int = SCRAM_ITERATIONS) -> str:
    """The storage tool's ``--add-scram`` value: the salted password, never the password,
    so no password shows on a command line."""
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac("sha512", credentials.password.encode(), salt, iterations)
    return (
        f"SCRAM-SHA-512=[name={credentials.username},iterations={iterations},"
        f'salt="{b64encode(salt).decode()}",saltedpassword="{b64encode(salted).decode()}"]'
    )


def jaas(module: str, credentials: Credentials, *users: Credentials) -> str:
    served = "".join(f' user_{u.username}="{u.password}"' for u in users)
    return (
        f"org.apache.kafka.common.security.{module} required "
        f'username="{credentials.username}" password="{credentials.password}"{served};'
    )


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalBroker:
    """The broker whose state lives in ``home/kafka`` and whose jars live in ``cache``."""

    def __init__(self, home: Path, cache: Path, topic_partitions: int = 3) -> None:
        self.dir = home.resolve() / "kafka"
        self.lib = cache.resolve() / f"kafka-{KAFKA_VERSION}" / "lib"
        self.record = self.dir / "broker.json"
        self.log = self.dir / "server.log"
        self.credentials = credentials_dir(home.resolve())
        self.topic_partitions = topic_partitions
        self.process = BackgroundProcess(self.record, self.log)

    # -- jars ------------------------------------------------------------------------
    def fetch_jars(self) -> None:
        """Copy Kafka and its dependencies from Maven Central, once."""
        if any(self.lib.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")) and any(self.lib.glob("kafka-tools-*.jar")):
            return
        self.lib.mkdir(parents=True, exist_ok=True)
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.lib}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(
                f"fetching Kafka {KAFKA_VERSION} with Maven failed:\n{result.stdout}{result.stderr}"
            )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{self.lib}/*",
            main,
            *args,
        ]

    # -- state -----------------------------------------------------------------------
    def state(self) -> BrokerState | None:
        data = self.process.state()
        return (
            None
            if data is None
            else BrokerState(int(data["pid"]), int(data["port"]), int(data["controller_port"]))
        )

    def running(self) -> BrokerState | None:
        state = self.state()
        return state if state is not None and pid_alive(state.pid) else None

    def access(self, principal: str = ADMIN, state: BrokerState | None = None) -> KafkaAccess:
        """How ``principal`` reaches this broker (the admin by default)."""
        state = state or self.state()
        if state is None:
            raise BrokerError("the broker has never been started here")
        credentials = read_credentials(self.credentials, principal)
        if credentials is None:
            raise BrokerError(f"no credentials for {principal} in {self.credentials}")
        return KafkaAccess(state.bootstrap, principal, credentials, "SASL_PLAINTEXT")

    def _principal_credentials(self) -> dict[str, Credentials]:
        found = {p: read_credentials(self.credentials, p) for p in SCRAM_PRINCIPALS}
        missing = sorted(p for p, c in found.items() if c is None)
        if missing:
            raise BrokerError(
                f"the broker's data in {self.dir / 'data'} has no credentials for {', '.join(missing)} "
                f"(it was formatted before they existed); stop it and remove {self.dir / 'data'} "
                "to create a new one"
            )
        return {p: c for p, c in found.items() if c is not None}

    def _write_config(self, port: int, controller_port: int) -> Path:
        users = self._principal_credentials()
        broker = users[BROKER]
        props = self.dir / "server.properties"
        props.touch(mode=0o600)
        os.chmod(props, 0o600)  # it holds the broker's own password
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    f"listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                    f"advertised.listeners=CLIENT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=CLIENT",
                    "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT",
                    # Clients and the broker itself: SCRAM, users in the metadata log.
                    "sasl.enabled.mechanisms=SCRAM-SHA-512",
                    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                    "listener.name.client.scram-sha-512.sasl.jaas.config="
                    + jaas("scram.ScramLoginModule", broker),
                    # The controller cannot read SCRAM users before it has loaded the log:
                    # PLAIN with the broker as its only user.
                    "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                    "sasl.mechanism.controller.protocol=PLAIN",
                    "listener.name.controller.plain.sasl.jaas.config="
                    + jaas("plain.PlainLoginModule", broker, broker),
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "allow.everyone.if.no.acl.found=false",
                    "super.users=" + ";".join(f"User:{kafka_user(p)}" for p in SUPER_USERS),
                    f"log.dirs={self.dir / 'data'}",
                    "num.partitions=3",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        (self.dir / "log4j2.properties").write_text(LOG4J.format(log=self.dir / "kafka.log"))
        return props

    def formatted(self) -> bool:
        return (self.dir / "data" / "meta.properties").exists()

    def _new_credentials(self) -> None:
        """A fresh password for every principal, before a new log directory is formatted."""
        for principal in SCRAM_PRINCIPALS:
            write_credentials(self.credentials, principal, Credentials(kafka_user(principal), new_password()))

    def _format(self, props: Path) -> None:
        if self.formatted():
            return
        cluster_id = new_cluster_id()
        scram = [
            arg
            for c in self._principal_credentials().values()
            for arg in ("--add-scram", scram_credential(c))
        ]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting the KRaft log directory failed:\n{result.stdout}{result.stderr}")

    # -- lifecycle -------------------------------------------------------------------
    def start(self, port: int | None = None, timeout: float = 60.0) -> tuple[BrokerState, float]:
        """Start the broker unless it runs; return its state and the seconds until ready."""
        started = time.monotonic()
        live = self.running()
        if live is not None:
            wait_until_ready(self.access(ADMIN, live), timeout)
            return live, time.monotonic() - started
        self.fetch_jars()
        self.dir.mkdir(parents=True, exist_ok=True)
        previous = self.state()
        if port is None and previous is not None:
            # Clients were given this address: a restarted broker must come back on it.
            busy = [p for p in (previous.port, previous.controller_port) if not port_free(p)]
            if busy:
                raise BrokerError(
                    f"the broker's ports {busy} are taken by another process; pass --port to move it"
                )
            port, controller_port = previous.port, previous.controller_port
        else:
            port = port or free_port()
            controller_port = free_port()
        if not self.formatted():
            self._new_credentials()
        props = self._write_config(port, controller_port)
        self._format(props)
        state = BrokerState(0, port, controller_port)
        proc = self.process.launch(
            self._java("kafka.Kafka", str(props)),
            port=port,
            controller_port=controller_port,
            bootstrap=state.bootstrap,
        )
        state = BrokerState(proc.pid, port, controller_port)
        try:
            admin = self.access(ADMIN, state)
            wait_until_ready(admin, timeout, proc)
            asyncio.run(self.provision(admin))
        except BaseException:
            self.stop()
            raise
        return state, time.monotonic() - started

    async def provision(self, admin: KafkaAccess) -> None:
        await provision(admin, self.topic_partitions, 1)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL); False if none was running."""
        return self.process.stop(timeout)


def start_for_benchmark(home: Path, cache: Path) -> tuple[LocalBroker, BrokerState]:
    """A fresh broker under ``home``, with this process (and every process it starts) pointed
    at it and logging quietly: what a benchmark stands on. The caller stops it."""
    broker = LocalBroker(home, cache)
    state, _ = broker.start()
    os.environ["GENOMHUB_HOME"] = str(home)
    os.environ["GENOMHUB_KAFKA_BOOTSTRAP"] = state.bootstrap
    os.environ["GENOMHUB_LOG_LEVEL"] = "WARNING"
    return broker, state


@dataclass(frozen=True)
class Provisioned:
    topics: list[str]
    acls_created: int
    acls_deleted: int


async def provision(admin: KafkaAccess, partitions: int, replicas: int) -> Provisioned:
    """As the admin: create the registered topics that are missing, and make the ACLs of
    genomhub's users exactly the registry's grants. Idempotent; the local broker runs it at
    every start, ``genomhub kafka provision`` on a broker run elsewhere."""
    from shared.bus import ensure_topics
    from tools.kafka.acls import sync_acls

    topics = await ensure_topics(admin, partitions, replicas)
    created, deleted = await sync_acls(admin)
    return Provisioned(topics, len(created), len(deleted))


async def answers_metadata(access: KafkaAccess) -> bool:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refusals are expected while it boots
    admin = access.admin(request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def wait_until_ready(
    access: KafkaAccess, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once the broker answers ``access``'s metadata request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"the broker exited with {proc.returncode}; see its log")
        if asyncio.run(answers_metadata(access)):
            return
        time.sleep(0.3)
    raise BrokerError(f"the broker at {access.bootstrap} did not answer within {timeout:.0f} s")
