"""A TCP proxy for outage tests."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CuttableProxy:
    """A TCP proxy (to RabbitMQ, Redis) whose connections can all be severed at once, like a network partition."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.writers: set[asyncio.StreamWriter] = set()
        self.refusing = False
        self.stalled = False  # data is dropped, connections kept: a partition nobody is told of
        self.dropped = asyncio.Event()  # set once stalled data was dropped (a request is in flight, lost)
        self.cuts = 0
        self.connections = 0  # accepted so far
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader, writer):
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if self.refusing:
            writer.transport.abort()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    if self.stalled:
                        self.dropped.set()
                    else:
                        dst.write(data)
                        await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def down(self) -> None:
        """Severs every connection and refuses new ones until up()."""
        self.cuts += 1
        self.refusing = True
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    def stall(self) -> None:
        """From now on, drops whatever is sent either way, and tells nobody (until up())."""
        self.stalled = True

    def up(self) -> None:
        self.refusing = self.stalled = False

    async def cut(self, down_for: float) -> None:
        self.down()
        await asyncio.sleep(down_for)
        self.up()

    async def stop(self) -> None:
        """Closes the listener and every connection, and returns once their relays have ended."""
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@contextlib.asynccontextmanager
async def proxy_to(upstream: tuple[str, int]) -> AsyncIterator[CuttableProxy]:
    """A started proxy to `upstream` (its port in `.port`), stopped on the way out."""
    p = CuttableProxy(upstream)
    p.port = await p.start()
    try:
        yield p
    finally:
        await p.stop()
