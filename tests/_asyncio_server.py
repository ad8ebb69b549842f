"""An asyncio server in a thread of its own, for tests that need a peer sockwire did not write
(`handler(reader, writer)` per connection, as `asyncio.start_server` takes it)."""

import asyncio
import threading


class AsyncioServer:
    """Started at construction; `address` and `port` once it listens; `close()` (or the `with`
    block's end) stops its loop and joins its thread."""

    def __init__(self, handler, backlog=100):
        ready = threading.Event()
        self.thread = threading.Thread(
            target=asyncio.run, args=(self._serve(handler, backlog, ready),), daemon=True
        )
        self.thread.start()
        if not ready.wait(5):
            raise RuntimeError("the asyncio server did not start")

    async def _serve(self, handler, backlog, ready):
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=backlog)
        self.address = server.sockets[0].getsockname()
        self.port = self.address[1]
        ready.set()
        async with server:
            await self.stopping.wait()

    def close(self):
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
