"""A real PostgreSQL server for tests and benchmarks, from Debian's packages.

The server runs from a throw-away data folder on a free loopback port, with trust
authentication (loopback only). If the binaries are missing it installs Debian's
``postgresql`` package (``tools/debian/install.sh``) rather than skipping, because the
catalogue's production path must really be tested. PostgreSQL refuses to run as root, so
as root the data folder belongs to the ``postgres`` user and the tools run as that user.
Each test gets a fresh database of its own (``new_database``), which is cheap.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tools.background import free_port

ROOT = Path(__file__).resolve().parent.parent


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        subprocess.run(["bash", str(ROOT / "tools" / "debian" / "install.sh")], check=True)
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
        )
    if not found:
        raise RuntimeError("PostgreSQL is not installed and tools/debian/install.sh did not install it")
    return found[-1].parent


class PostgresServer:
    """One PostgreSQL server for the length of a test session or a benchmark run."""

    def __init__(self, durable: bool = False) -> None:
        """``durable=False`` (tests) turns fsync off; benchmarks keep fsync and only make
        commits asynchronous, like SQLite's WAL with synchronous=NORMAL."""
        self.durable = durable
        self.bindir = _bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="genomhub-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user: str | None = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> PostgresServer:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
            "-c synchronous_commit=off -c max_connections=50"
        )
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "test") -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (import this fixture into a conftest.py)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def engine_urls(name: str) -> Any:
    """A fixture giving an empty database called ``name``, once on SQLite, once on PostgreSQL."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'{name}.sqlite'}"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.new_database(name)

    return database_url
