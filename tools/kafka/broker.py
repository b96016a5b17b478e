"""A single-node Apache Kafka broker in KRaft combined mode, on loopback, for local runs and
tests. The jars come from Maven Central through ``tools/kafka/pom.xml`` into a cache
outside git; the log directory and the record of the running broker live under
``<GENOMHUB_HOME>/kafka``. Other processes find the broker through that record
(:meth:`shared.config.Settings.bootstrap_servers`).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

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

    def __init__(self, home: Path, cache: Path) -> None:
        self.dir = home.resolve() / "kafka"
        self.lib = cache.resolve() / f"kafka-{KAFKA_VERSION}" / "lib"
        self.record = self.dir / "broker.json"
        self.log = self.dir / "server.log"
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

    def _write_config(self, port: int, controller_port: int) -> Path:
        props = self.dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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

    def _format(self, props: Path) -> None:
        if (self.dir / "data" / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
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
            wait_until_ready(live.bootstrap, timeout)
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
            wait_until_ready(state.bootstrap, timeout, proc)
        except BrokerError:
            self.stop()
            raise
        return state, time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL); False if none was running."""
        return self.process.stop(timeout)


async def answers_metadata(bootstrap: str) -> bool:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refusals are expected while it boots
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def wait_until_ready(bootstrap: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once the broker answers a metadata request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"the broker exited with {proc.returncode}; see its log")
        if asyncio.run(answers_metadata(bootstrap)):
            return
        time.sleep(0.3)
    raise BrokerError(f"the broker at {bootstrap} did not answer within {timeout:.0f} s")
