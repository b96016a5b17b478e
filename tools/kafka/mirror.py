"""Kafka's MirrorMaker 2 between the hub's cluster and a spoke's, for local runs and tests
(design.md section 11; Strimzi's ``KafkaMirrorMaker2`` does the same in Kubernetes).

The jars are Kafka's own ``connect-mirror`` and the Connect runtime it runs on, from Maven
Central through ``tools/kafka/mirror-pom.xml``, the broker's version, into the cache beside
the broker's (their own folder, so a broker starting meanwhile never sees half a jar). MM2
runs in dedicated mode (``org.apache.kafka.connect.mirror.MirrorMaker``) with one flow,
hub -> spoke, for the spokes' feeds only (``genomhub\\.spoke\\..*``).

Topics keep their names: ``IdentityReplicationPolicy``, not the default policy that would
write ``hub.genomhub.spoke.<region>.catalogue.v1``. A spoke reads one feed from one hub, so
there is no cycle to break by renaming, and the spoke's consumer and the hub's publisher name
the same topic. Partitions keep their numbers (what a checkpoint's heads count by); offsets do
not (a compacted source renumbers nothing, but MM2 writes densely), so a feed's checkpoints
prove completeness by the entries' sequence numbers, never by offsets.

MM2 reaches both brokers with SASL/SCRAM-SHA-512 as each broker's admin: it creates the
mirrored topic and all of its own internal topics on the spoke (offset syncs included), and
only reads on the hub.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from shared.kafka import KafkaAccess
from tools.background import BackgroundProcess, pid_alive
from tools.kafka.broker import KAFKA_VERSION, LOG4J, BrokerError, jaas

MIRROR_POM = Path(__file__).with_name("mirror-pom.xml")
MIRROR_MAIN = "org.apache.kafka.connect.mirror.MirrorMaker"
FEED_TOPICS = r"genomhub\.spoke\..*"
HUB, SPOKE = "hub", "spoke"


def mirror_properties(hub: KafkaAccess, spoke: KafkaAccess, topics: str = FEED_TOPICS) -> str:
    """The dedicated-mode configuration of one flow, hub -> spoke, of ``topics``."""
    lines = [
        f"clusters = {HUB}, {SPOKE}",
        f"{HUB}->{SPOKE}.enabled = true",
        f"{HUB}->{SPOKE}.topics = {topics}",
        f"{SPOKE}->{HUB}.enabled = false",
        "replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        "tasks.max = 1",
        # A feed created after MM2 started is mirrored within a second, not ten minutes.
        "refresh.topics.interval.seconds = 1",
        # The publisher writes the feeds in transactions: only committed entries cross, never
        # an aborted one of a writer killed mid-write, whose numbers its successor reuses.
        f"{HUB}.consumer.isolation.level = read_committed",
        "sync.topic.configs.enabled = true",
        "sync.topic.configs.interval.seconds = 10",
        # What a spoke needs is the feed: no consumer groups to translate, no ACLs to copy.
        "sync.topic.acls.enabled = false",
        # MM2's bookkeeping stays on the spoke: the hub holds only what its registry names.
        "offset-syncs.topic.location = target",
        "groups.exclude = .*",
        "sync.group.offsets.enabled = false",
        "emit.heartbeats.enabled = false",
        "dedicated.mode.enable.internal.rest = false",
        # Kafka's own jars declare their plugins: no seconds-long scan of the classpath at start.
        "plugin.discovery = service_load",
        f"{SPOKE}.plugin.discovery = service_load",
        "offset.flush.interval.ms = 1000",
        "replication.factor = 1",
        "offset-syncs.topic.replication.factor = 1",
        "heartbeats.topic.replication.factor = 1",
        "checkpoints.topic.replication.factor = 1",
        "config.storage.replication.factor = 1",
        "offset.storage.replication.factor = 1",
        "status.storage.replication.factor = 1",
    ]
    for alias, access in ((HUB, hub), (SPOKE, spoke)):
        if access.credentials is None:
            raise BrokerError(f"MirrorMaker 2 authenticates to the {alias}'s broker: no credentials given")
        lines += [
            f"{alias}.bootstrap.servers = {access.bootstrap}",
            f"{alias}.security.protocol = {access.security_protocol}",
            f"{alias}.sasl.mechanism = SCRAM-SHA-512",
            f"{alias}.sasl.jaas.config = " + jaas("scram.ScramLoginModule", access.credentials),
        ]
    return "\n".join(lines) + "\n"


class LocalMirror:
    """MirrorMaker 2 whose state lives in ``home/mirror`` and whose jars live in ``cache``."""

    def __init__(self, home: Path, cache: Path) -> None:
        self.dir = home.resolve() / "mirror"
        self.lib = cache.resolve() / f"kafka-{KAFKA_VERSION}" / "mirror"
        self.log = self.dir / "mirror.log"
        self.process = BackgroundProcess(self.dir / "mirror.json", self.dir / "stdout.log")

    def fetch_jars(self) -> None:
        """Copy MirrorMaker 2 and its dependencies from Maven Central, once."""
        if any(self.lib.glob(f"connect-mirror-{KAFKA_VERSION}.jar")):
            return
        partial = self.lib.with_name(self.lib.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        cmd = ["mvn", "-q", "-B", "-f", str(MIRROR_POM), "dependency:copy-dependencies"]
        result = subprocess.run([*cmd, f"-DoutputDirectory={partial}"], capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(
                f"fetching MirrorMaker 2 {KAFKA_VERSION} with Maven failed:\n{result.stdout}{result.stderr}"
            )
        partial.rename(self.lib)

    def start(self, hub: KafkaAccess, spoke: KafkaAccess, topics: str = FEED_TOPICS) -> int:
        """Start MM2 from the hub to the spoke (unless it runs); its pid. MM2 has no readiness
        of its own to wait for: a caller waits for what it mirrors."""
        live = self.process.running()
        if live is not None:
            return int(live["pid"])
        self.fetch_jars()
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "mm2.properties"
        props.touch(mode=0o600)
        os.chmod(props, 0o600)  # it holds both admins' passwords
        props.write_text(mirror_properties(hub, spoke, topics))
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(LOG4J.format(log=self.log))
        cmd = [
            "java",
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",  # MM2's start is what a test waits for; C1 gets there sooner
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{self.lib}/*",
            MIRROR_MAIN,
            str(props),
        ]
        proc = self.process.launch(cmd, hub=hub.bootstrap, spoke=spoke.bootstrap)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise BrokerError(f"MirrorMaker 2 exited with {proc.returncode}; see {self.process.log}")
        return proc.pid

    def running(self) -> bool:
        state = self.process.state()
        return state is not None and pid_alive(int(state["pid"]))

    def stop(self, timeout: float = 20.0) -> bool:
        return self.process.stop(timeout)
