"""Two receiver replicas on one database: a file is written by one of them, a submission is
sealed once, and a replica that dies mid-upload leaves nothing locked for good.

Each replica is a receiver app of its own (its own engine, its own leases' holder) on a real
loopback server, on SQLite and on PostgreSQL; the dead replica is a real ``genomhub run
receiver`` process, SIGKILLed.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Middleware
from opentelemetry import trace
from sqlalchemy import select

from services.receiver.api import ReceiverApi, count_requests
from services.receiver.archive import Layout
from services.receiver.state import SubmissionStore, leases
from shared.auth import Tokens, token_hash
from shared.events import FileReceived
from shared.http import BodyReaders, Pace, make_web
from shared.storage import ArchiveWriter
from tests.integration.receiver.conftest import TOKENS, _receiver, events_of, metadata
from tests.integration.receiver.test_receiver_crash import send_until_released
from tests.support import wait_for

AUTH = {"Authorization": f"Bearer {TOKENS['hovedstaden']}"}


@dataclass
class Replica:
    """One receiver app with its own store (engine) on the shared database."""

    store: SubmissionStore
    server: TestServer
    emitted: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


async def start_replica(
    database_url: str, archive: str, emitted: list[str], writer: ArchiveWriter
) -> Replica:
    store = SubmissionStore(database_url, lease_length=timedelta(seconds=3))

    async def emit(event: FileReceived, event_id: str) -> str:
        await asyncio.sleep(0.05)  # a broker's round trip: seals overlap for real
        emitted.append(event_id)
        return event_id

    api = ReceiverApi(
        store,
        Layout(archive),
        emit,
        trace.get_tracer("test"),
        max_file_size=1 << 30,
        pace=Pace(idle_timeout=20),
        bodies=BodyReaders(4),
        inboxes={},
        s3_part_size=5 << 20,
        writer=writer,
    )
    app = make_web([])
    app.middlewares.append(cast(Middleware, count_requests))
    api.install(app, Tokens({token_hash(t): holder for holder, t in TOKENS.items()}))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return Replica(store, server, emitted)


@pytest.fixture
async def replicas(
    receiver_url: str, tmp_path: Path, archive_writer: ArchiveWriter
) -> AsyncIterator[tuple[Replica, Replica]]:
    emitted: list[str] = []  # one broker for both
    archive = (tmp_path / "store").as_uri()
    first = await start_replica(receiver_url, archive, emitted, archive_writer)
    second = await start_replica(receiver_url, archive, emitted, archive_writer)
    try:
        yield first, second
    finally:
        for replica in (first, second):
            await replica.server.close()
            replica.store.dispose()


async def open_submission(session: aiohttp.ClientSession, replica: Replica, names: list[str]) -> str:
    async with session.post(
        replica.url("/v1/submissions"), json=metadata("S-rep", names), headers=AUTH
    ) as opened:
        assert opened.status == 201, await opened.text()
        return str((await opened.json())["submission_id"])


async def held_put(replica: Replica, path: str, data: bytes, first: int, release: asyncio.Event) -> int:
    """A PUT of ``data`` that sends ``first`` bytes, then waits for ``release``; its status."""
    reader, writer = await asyncio.open_connection(replica.server.host, replica.server.port)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data[:first])
    await writer.drain()
    await release.wait()
    writer.write(data[first:])
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


def lease_holders(store: SubmissionStore) -> list[str]:
    with store.reading() as conn:
        return list(conn.execute(select(leases.c.holder)).scalars())


async def test_two_replicas_never_write_one_file_at_once(replicas: tuple[Replica, Replica]) -> None:
    first, second = replicas
    data = bytes(range(256)) * 8192  # 2 MiB
    async with aiohttp.ClientSession() as session:
        sid = await open_submission(session, first, ["R1.fastq.gz"])
        path = f"/v1/submissions/{sid}/files/R1.fastq.gz"
        release = asyncio.Event()
        writing = asyncio.create_task(held_put(first, path, data, 1 << 20, release))
        await wait_until(lambda: len(lease_holders(first.store)) == 1)
        async with session.put(second.url(path), data=data, headers=AUTH) as refused:
            assert refused.status == 409, await refused.text()
            assert refused.headers["Retry-After"] == "5"
            assert "being uploaded by another request" in (await refused.json())["error"]
        async with session.put(first.url(path), data=data, headers=AUTH) as same_replica:
            assert same_replica.status == 409  # as a second request of one process was before
        release.set()
        assert await writing == 200
        assert lease_holders(first.store) == []  # released with the answer
        async with session.head(second.url(path), headers=AUTH) as done:
            assert done.headers["Upload-Complete"] == "?1"
            assert done.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'


async def test_concurrent_seals_on_two_replicas_emit_one_event(replicas: tuple[Replica, Replica]) -> None:
    first, second = replicas
    async with aiohttp.ClientSession() as session:
        sid = await open_submission(session, first, ["R1.fastq.gz"])
        path = f"/v1/submissions/{sid}/files/R1.fastq.gz"
        async with session.put(second.url(path), data=b"ACGT" * 1000, headers=AUTH) as put:
            assert put.status == 200

        async def seal(replica: Replica) -> dict[str, Any]:
            async with session.post(replica.url(f"/v1/submissions/{sid}/seal"), headers=AUTH) as sealed:
                assert sealed.status == 200, await sealed.text()
                return dict(await sealed.json())

        answers = await asyncio.gather(*(seal(r) for r in (first, second) * 4))
    assert len(first.emitted) == 1  # both replicas share the list: one event in all
    assert {a["event_id"] for a in answers} == {first.emitted[0]}
    assert len({a["received_at"] for a in answers}) == 1


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(condition):
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_a_replica_killed_mid_upload_frees_the_file_for_the_other(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two receiver processes on one SQLite database and archive; the one writing is SIGKILLed,
    the other refuses the file until the dead one's lease runs out, then the upload resumes
    there from the stored prefix and is sealed once."""
    database = tmp_path / "receiver.db"
    shared = {
        "GENOMHUB_RECEIVER_DATABASE_URL": f"sqlite:///{database}",
        "GENOMHUB_RECEIVER_LEASE_SECONDS": "3",
    }
    store, inbox = (tmp_path / "store").as_uri(), (tmp_path / "inbox").as_uri()
    dying = _receiver(tmp_path, "dying", store, inbox, shared).start()
    other = _receiver(tmp_path, "other", store, inbox, shared).start()
    try:
        opened = other.call("POST", "/v1/submissions", json=metadata("S-kill", ["R1.fastq.gz"]))
        sid = opened.json()["submission_id"]
        path = f"/v1/submissions/{sid}/files/R1.fastq.gz"
        data = os.urandom(12_000_000)
        release = threading.Event()
        sender = threading.Thread(target=send_until_released, args=(dying, path, data, 8_000_000, release))
        sender.start()
        try:
            wait_for(
                lambda: int(other.call("HEAD", path).headers["Upload-Offset"]) >= 4_000_000,
                what="the first bytes to arrive at the replica that will die",
            )
            busy = other.call("PUT", path, data=data)
            assert busy.status_code == 409 and "being uploaded" in busy.json()["error"]
            dying.stop(signal.SIGKILL)
        finally:
            release.set()
            sender.join(60)
        with sqlite3.connect(database) as conn:
            ((holder,),) = conn.execute("SELECT holder FROM receiver_leases").fetchall()
        assert dying.process is not None and dying.process.proc is not None
        assert holder.split(":")[1] == str(dying.process.proc.pid)  # left behind by the dead replica
        offset = int(other.call("HEAD", path).headers["Upload-Offset"])
        assert offset > 0

        def resumed() -> bool:
            answer = other.call("PUT", path, data=data[offset:], headers={"Upload-Offset": str(offset)})
            assert answer.status_code in (200, 409), answer.text
            return answer.status_code == 200

        wait_for(resumed, timeout=20, what="the dead replica's lease to run out")
        head = other.call("HEAD", path)
        assert head.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert other.call("POST", f"/v1/submissions/{sid}/seal").status_code == 200
        wait_for(lambda: len(events_of(kafka_bootstrap, sid)) == 1, what="the one file-received")
    finally:
        dying.stop(signal.SIGKILL)
        other.stop()


def _open_store(url: str, start: Any, failures: Any) -> None:
    start.wait(30)
    try:
        SubmissionStore(url).dispose()  # migrates as it opens, as a replica at its start
    except Exception as exc:
        failures.put(f"{type(exc).__name__}: {exc}"[:300])


def test_replicas_starting_together_migrate_one_at_a_time(receiver_url: str) -> None:
    """Replicas opening a fresh database at the same moment: one migrates, the others find
    the schema at its head; none fails on a table another has just created."""
    context = multiprocessing.get_context("fork")
    start, failures = context.Event(), context.Queue()
    replicas = [context.Process(target=_open_store, args=(receiver_url, start, failures)) for _ in range(4)]
    for replica in replicas:
        replica.start()
    start.set()
    for replica in replicas:
        replica.join(60)
    problems = [failures.get() for _ in range(failures.qsize())]
    assert not problems, problems
    assert [r.exitcode for r in replicas] == [0] * 4
    store = SubmissionStore(receiver_url)
    assert lease_holders(store) == []  # the schema is whole: its newest table is there
    store.dispose()
