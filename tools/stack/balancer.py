"""One address for a service's replicas in the local stack, as a Kubernetes Service gives.

With ``genomhub up --replicas N`` each replica listens on a port of its own, and a
:class:`RoundRobin` listens on the service's usual port and hands each new connection to the
next replica in turn, so the demo, the upload client and the tests reach "the receiver" at
the address they always did, while its requests spread over the replicas. Like kube-proxy it
balances connections, not requests, and a replica that refuses the connection (dead, or not
yet listening) is skipped for the next one; only when every replica refuses is the
connection closed.

It runs its own event loop in a thread, because the stack around it (the supervisor, the live
table) is synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Sequence

CHUNK = 1 << 16


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until ``source`` ends, then pass the end on (a half-close where it can be)."""
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        pass


class RoundRobin:
    """A TCP balancer on ``host:port`` over the replicas listening on ``replicas`` (ports)."""

    def __init__(self, name: str, port: int, replicas: Sequence[int], host: str = "127.0.0.1") -> None:
        if not replicas:
            raise ValueError(f"{name}: a balancer needs at least one replica")
        self.name = name
        self.host = host
        self.port = port
        self.replicas = list(replicas)
        self.connections: Counter[int] = Counter()
        """Connections handed to each replica's port so far."""
        self._turn = itertools.cycle(range(len(self.replicas)))
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> RoundRobin:
        """Listen (returns once the port is bound; raises if it cannot be)."""
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        )
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"balancer {self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop the connections in flight (the replicas stop with it)."""
        if self._thread is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            # The connections unwind here, closing their sockets, rather than being dropped
            # with the loop half-way through (Python then warns of coroutines that ignored
            # GeneratorExit). One accepted just before the close starts its task after it:
            # look again until none is left.
            for _ in range(10):
                connections = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                if not connections:
                    break
                for task in connections:
                    task.cancel()
                await asyncio.wait(connections, timeout=5)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop.close()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next replica that takes one; None if none does."""
        for _ in self.replicas:
            port = self.replicas[next(self._turn)]
            try:
                streams = await asyncio.open_connection(self.host, port)
            except OSError:
                continue
            self.connections[port] += 1
            return streams
        return None

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._upstream()
        if upstream is None:
            client_writer.close()
            return
        reader, writer = upstream
        requests = asyncio.create_task(_pipe(client_reader, writer))
        try:
            await _pipe(reader, client_writer)  # the replica is done with the connection: so are we
        finally:
            requests.cancel()
            for w in (writer, client_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
