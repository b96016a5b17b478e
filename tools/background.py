"""Local infrastructure processes (the Kafka broker, Jaeger) started in the background.

Each one leaves a JSON record of its pid and addresses under GENOMHUB_HOME, so any later
command (status, stop, the services) finds it, and a second start is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Nobody listens on ``port``; a socket of a just-stopped server lingering in TIME_WAIT
    does not count, since servers (Kafka, Jaeger) bind with SO_REUSEADDR too."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class BackgroundProcess:
    """A detached process whose record lives at ``record``."""

    def __init__(self, record: Path, log: Path) -> None:
        self.record = record
        self.log = log

    def state(self) -> dict[str, Any] | None:
        return json.loads(self.record.read_text()) if self.record.exists() else None

    def running(self) -> dict[str, Any] | None:
        state = self.state()
        return state if state is not None and pid_alive(int(state["pid"])) else None

    def launch(self, args: Sequence[str], **details: Any) -> subprocess.Popen[bytes]:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.record.write_text(json.dumps({"pid": proc.pid, **details}))
        return proc

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; False if it was not running."""
        state = self.running()
        if state is None:
            return False
        pid = int(state["pid"])
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
            os.waitpid(pid, os.WNOHANG)
        return True
