"""The local stack: the broker, Jaeger and the five services as supervised processes.

``genomhub up``, ``genomhub demo`` and the end-to-end and fault tests all run the stack
through :class:`LocalStack`, so they exercise the same processes an operator runs. A
service that dies is restarted (with a growing pause if it keeps dying); stopping sends
SIGTERM and waits, so consumers leave their groups cleanly.

With more than one replica of each service (``genomhub up --replicas N``,
``GENOMHUB_REPLICAS``) the stack runs what production runs: N processes of each service in
one consumer group, on one database, each on a port of its own, behind a round-robin balancer
on the service's usual port (:mod:`tools.stack.balancer`), as a Kubernetes Service is.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from shared.bus import end_offsets, group_lag, partitions_of
from shared.config import SERVICE_SETTINGS, HubKeySettings, KafkaSettings, StateSettings
from shared.events import Region
from shared.kafka import KafkaAccess, credentials_dir, kafka_access, read_credentials
from shared.topics import (
    ADMIN,
    OPERATOR,
    SERVICES,
    SPOKE,
    SUBSCRIPTIONS,
    consumer_group,
    dlq_name,
    feed_topic,
    spoke_principal,
    topic_name,
)
from tools.background import free_port
from tools.jaeger.server import JaegerState, LocalJaeger
from tools.kafka.broker import LocalBroker
from tools.kafka.mirror import LocalMirror
from tools.stack.balancer import RoundRobin
from tools.stack.environment import StackSettings


@dataclass
class Supervised:
    """One process of a service: ``name`` is the service's, or ``<service>-<i>`` for a replica."""

    name: str
    service: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    exits: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False


class Supervisor:
    """Keeps each service process running until :meth:`stop`."""

    def __init__(self, services: Iterable[Supervised], say: Callable[[str], None]) -> None:
        self.services = {s.name: s for s in services}
        self.say = say
        self.stopping = False

    def start(self) -> None:
        for service in self.services.values():
            service.start()

    def poll(self) -> None:
        """Restart whatever died; a process that keeps dying waits longer each time."""
        now = time.monotonic()
        for service in self.services.values():
            proc = service.proc
            if self.stopping or proc is None or proc.poll() is None:
                continue
            if service.next_start == 0.0:
                service.exits.append(proc.returncode)
                pause = min(2.0 ** min(service.restarts, 5) * 0.5, 15.0)
                service.next_start = now + pause
                self.say(f"{service.name} exited with {proc.returncode}; restarting in {pause:.1f} s")
            elif now >= service.next_start:
                service.restarts += 1
                service.next_start = 0.0
                service.start()

    def stop(self, timeout: float = 20.0) -> None:
        self.stopping = True
        for service in self.services.values():
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.services.values():
            proc = service.proc
            if proc is None:
                continue
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                service.signal(signal.SIGKILL)
                proc.wait(10)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ready: bool
    restarts: int
    lag: int | None
    dead_letters: int


async def _group_status(access: KafkaAccess, service: str) -> tuple[int | None, int]:
    """The consumer lag of ``service``'s group and the dead letters of its subscriptions."""
    lag: int | None = None
    dead = 0
    try:
        committed = await group_lag(access, consumer_group(service))
        lag = sum(max(end - offset, 0) for offset, end in committed.values()) if committed else None
        for model in SUBSCRIPTIONS.get(service, ()):  # a spoke consumes no events
            dlq = dlq_name(topic_name(model))
            ends = await end_offsets(access, await partitions_of(access, dlq))
            dead += sum(ends.values())
    except Exception:  # the broker may be restarting: show what is known
        lag = None
    return lag, dead


async def _status(access: KafkaAccess, supervisor: Supervisor) -> list[ServiceStatus]:
    """A row a process; the replicas of a service share one group, so they show its lag."""
    groups = {}
    for service in dict.fromkeys(s.service for s in supervisor.services.values()):
        groups[service] = await _group_status(access, service)
    return [
        ServiceStatus(p.name, p.pid, p.ready(), p.restarts, *groups[p.service])
        for p in supervisor.services.values()
    ]


def status_table(rows: list[ServiceStatus]) -> Table:
    """One row a service: is it up, how often it was restarted, and how far it is behind."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("service")
    for numeric in ("pid", "ready", "restarts", "lag", "dlq"):
        table.add_column(numeric, justify="left" if numeric == "ready" else "right")
    for r in rows:
        lag = "-" if r.lag is None else str(r.lag)
        table.add_row(
            r.name, str(r.pid or "-"), "yes" if r.ready else "no", str(r.restarts), lag, str(r.dead_letters)
        )
    return table


def render(rows: list[ServiceStatus]) -> str:
    """The status table as plain text, for logs and the demo's output."""
    console = Console(file=io.StringIO(), record=True, width=100, color_system=None)
    console.print(status_table(rows))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).strip("\n")


class LocalSpoke:
    """A region's spoke beside the local hub, as a region's site runs one: its own KRaft broker
    under ``<home>/spokes/<region>``, MirrorMaker 2 from the hub's broker to it, and the spoke
    service, supervised with the hub's services. The spoke pins the hub's public key; the hub's
    secret key and its passphrase are not in its environment."""

    def __init__(self, region: Region, settings: StackSettings, home: Path | None = None) -> None:
        self.region = region
        self.home = home or settings.state_dir / "spokes" / region.value
        self.broker = LocalBroker(self.home, settings.cache, settings.topics.partitions)
        self.mirror = LocalMirror(self.home, settings.cache)
        self.bootstrap = ""
        self.port = free_port()

    @property
    def name(self) -> str:
        return f"{SPOKE}-{self.region.value}"

    def start(self, hub: LocalStack, env: Mapping[str, str], genomhub: str) -> Supervised:
        """Its broker and MirrorMaker 2 started; the spoke service's process, to supervise."""
        took = self.start_broker()
        self.start_mirror(hub.bootstrap, hub.settings.state)
        hub.say(
            f"spoke {self.region.value}: its broker at {self.bootstrap} in {took:.1f} s, MirrorMaker 2 from the hub"
        )
        access = ""
        if "access" in hub.names:
            port = env.get("GENOMHUB_ACCESS_PORT") or SERVICE_SETTINGS["access"].model_fields["port"].default
            access = f"http://127.0.0.1:{port}"
        return self.process(hub.bootstrap, hub.settings.state, env, genomhub, hub.logs, access)

    def start_broker(self) -> float:
        """The spoke's own broker; the seconds it took to start."""
        state, took = self.broker.start()
        self.bootstrap = state.bootstrap
        return took

    def start_mirror(self, hub_bootstrap: str, hub_state: StateSettings) -> None:
        """MirrorMaker 2 from the hub's broker, carrying the region's own feed and no other:
        another region's holds that region's records whole."""
        state = self.broker.running()
        if state is None:
            raise RuntimeError(f"the spoke's broker under {self.home} is not running")
        hub_admin = kafka_access(ADMIN, KafkaSettings(bootstrap=hub_bootstrap), hub_state)
        self.mirror.start(hub_admin, self.broker.access(ADMIN, state), re.escape(feed_topic(self.region)))

    def process(
        self,
        hub_bootstrap: str,
        hub_state: StateSettings,
        env: Mapping[str, str],
        genomhub: str,
        logs: Path,
        hub_access_url: str = "",
    ) -> Supervised:
        """The spoke service's process (not started): on its own broker, pinning the hub's
        public key, acknowledging to the hub's broker as the region's own principal, its
        portal asking the hub's access service at ``hub_access_url`` (unset: the mirror alone)."""
        principal = spoke_principal(self.region)
        on_the_hub = read_credentials(credentials_dir(hub_state.state_dir), principal)
        if on_the_hub is None:
            raise RuntimeError(
                f"the hub's broker has no credentials for {principal} under {hub_state.state_dir}"
            )
        hub_keys = HubKeySettings(state=hub_state)
        own = {
            k: v
            for k, v in env.items()
            if k not in ("GENOMHUB_HUB_SECRET_KEY", "GENOMHUB_HUB_KEY_PASSPHRASE")
        }
        own |= {
            "GENOMHUB_HOME": str(self.home),
            "GENOMHUB_KAFKA_BOOTSTRAP": self.bootstrap,
            "GENOMHUB_SPOKE_REGION": self.region.value,
            "GENOMHUB_SPOKE_PORT": str(self.port),
            "GENOMHUB_SPOKE_HUB_PUBLIC_KEY": str(hub_keys.public_path()),
            "GENOMHUB_SPOKE_HUB_KAFKA_BOOTSTRAP": hub_bootstrap,
            "GENOMHUB_SPOKE_HUB_KAFKA_USERNAME": on_the_hub.username,
            "GENOMHUB_SPOKE_HUB_KAFKA_PASSWORD": on_the_hub.password,
            "GENOMHUB_SPOKE_HUB_ACCESS_URL": hub_access_url,
        }
        return Supervised(
            self.name, SPOKE, [genomhub, "run", SPOKE], own, logs / f"{self.name}.log", self.port
        )

    def stop(self) -> None:
        self.mirror.stop()
        self.broker.stop()


class LocalStack:
    """The whole local stack as a context manager; what it started, it stops."""

    def __init__(
        self,
        settings: StackSettings,
        services: Iterable[str] = SERVICES,
        jaeger: bool = True,
        env: Mapping[str, str] | None = None,
        say: Callable[[str], None] = print,
        jaeger_ports: tuple[int, int, int] = (4318, 4317, 16686),
        replicas: int | None = None,
        spokes: Iterable[Region] = (),
    ) -> None:
        """``replicas`` of each service (unset: ``GENOMHUB_REPLICAS``); a spoke for each of
        ``spokes`` (:class:`LocalSpoke`)."""
        self.settings = settings
        self.names = list(services)
        self.replicas = replicas or settings.replicas
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {self.replicas}")
        self.balancers: list[RoundRobin] = []
        self.want_jaeger = jaeger
        self.jaeger_ports = jaeger_ports
        self.extra_env = dict(env or {})
        self.say = say
        self.broker = LocalBroker(settings.state_dir, settings.cache, settings.topics.partitions)
        self.jaeger = LocalJaeger(settings.state_dir, settings.cache)
        self.started_broker = False
        self.started_jaeger = False
        self.jaeger_state: JaegerState | None = None
        self.bootstrap = ""
        self._operator: KafkaAccess | None = None
        self.supervisor: Supervisor | None = None
        self.logs = settings.state_dir / "logs"
        self.spokes = [LocalSpoke(region, settings) for region in dict.fromkeys(spokes)]

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.settings.bootstrap:
            self.bootstrap = self.settings.bootstrap
        else:
            self.started_broker = self.broker.running() is None
            state, took = self.broker.start()
            self.bootstrap = state.bootstrap
            self.say(f"kafka ready at {state.bootstrap} in {took:.1f} s")
        env = self.settings.process_environment(self.bootstrap)
        if self.want_jaeger and self.jaeger.built():
            self.started_jaeger = self.jaeger.running() is None
            self.jaeger_state = self.jaeger.start(*self.jaeger_ports)
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.jaeger_state.otlp_endpoint
            self.say(f"jaeger ready, query API at {self.jaeger_state.query_url}")
        elif self.want_jaeger:
            self.say("jaeger is not built (tools/jaeger/build.sh): traces are not exported")
        env.update(self.extra_env)
        self.logs.mkdir(parents=True, exist_ok=True)
        genomhub = str(Path(sys.executable).with_name("genomhub"))
        supervised = []
        for name in self.names:
            port_key = f"GENOMHUB_{name.upper()}_PORT"
            port = (
                int(env[port_key])
                if port_key in env
                else int(SERVICE_SETTINGS[name].model_fields["port"].default)
            )
            command = [genomhub, "run", name]
            if self.replicas == 1:
                supervised.append(Supervised(name, name, command, env, self.logs / f"{name}.log", port))
                continue
            ports = [free_port() for _ in range(self.replicas)]
            for i, own in enumerate(ports, start=1):
                replica = f"{name}-{i}"
                own_env = {**env, port_key: str(own)}
                supervised.append(
                    Supervised(replica, name, command, own_env, self.logs / f"{replica}.log", own)
                )
            self.balancers.append(RoundRobin(name, port, ports).start())
        for spoke in self.spokes:
            supervised.append(spoke.start(self, env, genomhub))
        self.supervisor = Supervisor(supervised, self.say)
        self.supervisor.start()

    def port_of(self, service: str) -> int:
        """Where ``service`` is reached: its one process, or the balancer before its replicas."""
        assert self.supervisor is not None
        balancer = next((b for b in self.balancers if b.name == service), None)
        return balancer.port if balancer is not None else self.supervisor.services[service].port

    def processes_of(self, service: str) -> list[Supervised]:
        """The processes of ``service``: one, or its replicas."""
        assert self.supervisor is not None
        return [p for p in self.supervisor.services.values() if p.service == service]

    @property
    def operator(self) -> KafkaAccess:
        """How the stack's own checks (status, the demo's results) reach the broker: as the
        operator, never as a service."""
        if self._operator is None:
            self._operator = kafka_access(
                OPERATOR, KafkaSettings(bootstrap=self.bootstrap), self.settings.state
            )
        return self._operator

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.supervisor is not None
        deadline = time.monotonic() + timeout
        pending = set(self.supervisor.services)
        while pending and time.monotonic() < deadline:
            self.supervisor.poll()
            pending = {n for n in pending if not self.supervisor.services[n].ready()}
            time.sleep(0.3)
        if pending:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {sorted(pending)} (logs in {self.logs})")

    def status(self) -> list[ServiceStatus]:
        assert self.supervisor is not None
        return asyncio.run(_status(self.operator, self.supervisor))

    def stop(self) -> None:
        for balancer in self.balancers:
            balancer.stop()
        self.balancers = []
        if self.supervisor is not None:
            self.supervisor.stop()
        for spoke in self.spokes:
            spoke.stop()
        if self.started_jaeger:
            self.jaeger.stop()
        if self.started_broker:
            self.broker.stop()

    def watch(self, interval: float = 2.0) -> None:
        """Keep the services alive and show their status until interrupted: redrawn in place
        on a terminal, and printed again only when it changes anywhere else (a log)."""
        assert self.supervisor is not None
        if not sys.stdout.isatty():
            last = ""
            while True:
                self.supervisor.poll()
                table = render(self.status())
                if table != last:
                    print(table, flush=True)
                last = table
                time.sleep(interval)
        with Live(console=Console(), auto_refresh=False) as live:
            while True:
                self.supervisor.poll()
                shown = status_table(self.status())
                shown.caption = "Ctrl-C stops the stack."
                live.update(shown, refresh=True)
                time.sleep(interval)
