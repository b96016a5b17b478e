"""Helpers the tests share: running genomhub processes and reading topics on the real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.bus import read_records
from tools.background import free_port

__all__ = ["free_port"]

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A genomhub process started for a test; its output goes to ``log``."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True
        )
        return self

    def wait_http(
        self, port: int, path: str = "/healthz", timeout: float = 60, tls: ssl.SSLContext | None = None
    ) -> None:
        """Wait until the process answers 200 on ``path`` (over HTTPS, verified, with ``tls``)."""
        scheme = "https" if tls is not None else "http"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"{scheme}://127.0.0.1:{port}{path}", timeout=1, context=tls
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.args} not serving {path} in {timeout} s:\n{self.tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def genomhub(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("genomhub")), *args]


def records(bootstrap: str, topic: str) -> list[Any]:
    """Every record on ``topic`` from the beginning, read without a consumer group."""
    return list(asyncio.run(read_records(bootstrap, [topic])))


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.3, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
