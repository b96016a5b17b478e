"""`genomhub up --replicas 2` as the stack runs it: two processes of a service, one address."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

from tests.e2e.conftest import stack_settings
from tools.background import free_port
from tools.stack.supervisor import LocalStack, render


def ready_via(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
        return int(answer.status)


def test_two_replicas_of_each_service_behind_one_address(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    ports = {"receiver": free_port(), "indexer": free_port()}
    env = {f"GENOMHUB_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    with LocalStack(settings, services=list(ports), jaeger=False, env=env, say=print, replicas=2) as stack:
        stack.wait_ready()
        assert stack.supervisor is not None
        assert sorted(stack.supervisor.services) == ["indexer-1", "indexer-2", "receiver-1", "receiver-2"]
        own = {p.port for p in stack.supervisor.services.values()}
        assert len(own) == 4 and not own & set(ports.values()), "each replica on a port of its own"
        assert stack.port_of("receiver") == ports["receiver"]

        (receiver,) = [b for b in stack.balancers if b.name == "receiver"]
        assert all(ready_via(ports["receiver"]) == 200 for _ in range(6))
        assert sorted(receiver.connections.values()) == [3, 3], "connections alternate"

        table = render(stack.status())
        rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
        assert set(rows) == {"receiver-1", "receiver-2", "indexer-1", "indexer-2"}, table
        assert all(row[2] == "yes" for row in rows.values()), table

        first = stack.supervisor.services["receiver-1"]
        dead = first.pid
        first.signal(signal.SIGKILL)
        assert first.proc is not None
        first.proc.wait(10)
        assert all(ready_via(ports["receiver"]) == 200 for _ in range(4)), "the other replica answers"
        deadline = time.monotonic() + 60
        while first.pid in (None, dead) and time.monotonic() < deadline:
            stack.supervisor.poll()
            time.sleep(0.3)
        assert first.pid not in (None, dead) and first.restarts == 1, "the dead replica is restarted"
