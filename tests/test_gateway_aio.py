"""Gateway handlers on asyncio: `await gw.serve()` on the running loop (asyncio and uvloop), and
`async def` handlers on a gateway started with `start()` (a loop on each handler thread)."""

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading

import pytest

import sockwire as sw
from sockwire import aio

GAME = sw.PacketFormat("!IH", ("length", "msg_id"))


async def serving(gw):
    """Starts `await gw.serve()` as a task; returns it once the gateway listens."""
    task = asyncio.create_task(gw.serve())
    while not gw.running:
        if task.done():
            task.result()  # raises what made serve() fail
        await asyncio.sleep(0.005)
    return task


async def cancel(task):
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_serve_runs_async_and_plain_handlers_on_the_running_loop(run):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    seen = []

    @gw.on_connect
    async def hello(client):
        await asyncio.sleep(0)
        seen.append(("connect", threading.get_ident()))

    @gw.route(1)
    async def slow_echo(client, packet):
        await asyncio.sleep(0.01)
        seen.append(("async", threading.get_ident()))
        return b"async:" + packet.body

    @gw.route(2)
    def plain(client, packet):
        seen.append(("plain", threading.get_ident()))
        return b"plain:" + packet.body

    @gw.on_disconnect
    async def bye(client, reason):
        await asyncio.sleep(0.01)
        seen.append((reason, threading.get_ident()))

    async def main():
        task = await serving(gw)
        async with await aio.connect(gw.address, GAME, timeout=5) as conn:
            assert (await conn.request(b"a", msg_id=1)).body == b"async:a"
            assert (await conn.request(b"b", msg_id=2)).body == b"plain:b"
        while len(seen) < 4:
            await asyncio.sleep(0.01)
        await cancel(task)
        return threading.get_ident()

    loop_thread = run(main())
    assert [what for what, _ in seen] == ["connect", "async", "plain", "closed"]
    assert {thread for _, thread in seen} == {loop_thread}
    assert not gw.running


def test_a_clients_packets_wait_for_its_previous_async_handler(run):
    """Per-client order: handlers of one client never overlap, replies come in request order,
    even when later requests would finish first."""
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    running = {}
    overlaps = []

    @gw.route(1)
    async def handler(client, packet):
        running[client.client_fd] = running.get(client.client_fd, 0) + 1
        if running[client.client_fd] > 1:
            overlaps.append(client.client_fd)
        n = int(packet.body)
        await asyncio.sleep(0.002 * (n % 4))  # later requests often sleep less
        running[client.client_fd] -= 1
        return packet.body

    @gw.route(2)
    def plain(client, packet):  # a plain handler waits its turn too
        if running.get(client.client_fd):
            overlaps.append(client.client_fd)
        return b"p" + packet.body

    async def client(addr):
        async with await aio.connect(addr, GAME, timeout=10) as conn:
            items = [(b"%d" % i, 2 if i % 5 == 4 else 1) for i in range(40)]
            for body, msg_id in items:  # pipelined: all sent before any reply is read
                await conn.send(body, msg_id=msg_id)
            got = [(await conn.recv()).body for _ in items]
            assert got == [body if msg_id == 1 else b"p" + body for body, msg_id in items]

    async def main():
        task = await serving(gw)
        await asyncio.gather(*(client(gw.address) for _ in range(5)))
        await cancel(task)

    run(main())
    assert overlaps == []
    assert gw.stats()["handler_errors"] == 0


def test_different_clients_handlers_run_concurrently(run):
    """A's handler waits for something only B's handler does: with one client at a time it
    would never finish."""
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    async def main():
        arrived = asyncio.Event()

        @gw.route(1)
        async def wait_for_b(client, packet):
            await asyncio.wait_for(arrived.wait(), 5)
            return b"a done"

        @gw.route(2)
        async def b(client, packet):
            arrived.set()
            return b"b done"

        task = await serving(gw)
        a = await aio.connect(gw.address, GAME, timeout=10)
        b_conn = await aio.connect(gw.address, GAME, timeout=10)
        await a.send(b"", msg_id=1)
        await asyncio.sleep(0.05)  # A's handler is waiting now
        assert (await b_conn.request(b"", msg_id=2)).body == b"b done"
        assert (await a.recv()).body == b"a done"
        await a.close()
        await b_conn.close()
        await cancel(task)

    run(main())


def test_cancelled_serve_stops_gracefully(run):
    """Cancelling serve(): the reply a running handler returns is still delivered, every client
    gets on_disconnect("stopped"), then the cancellation goes on."""
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    reasons = []

    async def main():
        started = asyncio.Event()

        @gw.route(1)
        async def slow(client, packet):
            started.set()
            await asyncio.sleep(0.2)
            return b"late reply"

        @gw.on_disconnect
        async def bye(client, reason):
            await asyncio.sleep(0)
            reasons.append(reason)

        task = await serving(gw)
        conns = [await aio.connect(gw.address, GAME, timeout=5) for _ in range(3)]
        await conns[0].send(b"", msg_id=1)
        await started.wait()
        await cancel(task)
        assert not gw.running
        assert sorted(reasons) == ["stopped"] * 3
        assert (await conns[0].recv()).body == b"late reply"
        for conn in conns:
            with pytest.raises(sw.ConnectionClosed):
                await conn.recv()
            await conn.close()

    run(main())


def test_stop_from_the_loop_returns_and_serve_ends(run):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route(1)
    async def quit_(client, packet):
        gw.stop()  # on the loop's thread: returns at once, the loop finishes the stop
        return b"bye"

    async def main():
        task = await serving(gw)
        async with await aio.connect(gw.address, GAME, timeout=5) as conn:
            assert (await conn.request(b"", msg_id=1)).body == b"bye"
            await asyncio.wait_for(task, 10)  # serve() returns: no cancellation needed
        assert not gw.running

    run(main())


def test_stop_from_another_thread_ends_serve(run):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    reasons = []

    @gw.on_disconnect
    async def bye(client, reason):
        reasons.append(reason)

    async def main():
        task = await serving(gw)
        conn = await aio.connect(gw.address, GAME, timeout=5)
        await asyncio.sleep(0.05)
        await asyncio.to_thread(gw.stop)  # blocks that thread while the loop runs on_disconnect
        await asyncio.wait_for(task, 10)
        await conn.close()

    run(main())
    assert reasons == ["stopped"]


def test_async_handler_errors_are_logged_and_the_client_stays(run, caplog):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route(1)
    async def broken(client, packet):
        await asyncio.sleep(0)
        raise ValueError("handler bug")

    @gw.route(2)
    async def echo(client, packet):
        return packet.body

    async def main():
        task = await serving(gw)
        async with await aio.connect(gw.address, GAME, timeout=5) as conn:
            await conn.send(b"", msg_id=1)
            assert (await conn.request(b"still here", msg_id=2)).body == b"still here"
        await cancel(task)

    with caplog.at_level(logging.ERROR, logger="sockwire.gateway"):
        run(main())
    assert gw.stats()["handler_errors"] == 1
    [record] = [r for r in caplog.records if r.name == "sockwire.gateway"]
    assert "the handler for msg_id 1" in record.getMessage()
    assert record.exc_info[0] is ValueError


def test_serve_on_a_running_gateway_is_an_error(run):
    gw = sw.Gateway(("127.0.0.1", 0), GAME).start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            run(gw.serve())
    finally:
        gw.stop()


def test_nothing_is_lost_when_async_handlers_hold_many_events(run):
    """Many clients, each busy in a handler waiting for a gate, keep sending: more events than
    the loop holds for busy clients. Once the gate opens every request gets its reply, in
    order (the loop stopped taking events, then took them again)."""
    gw = sw.Gateway(("127.0.0.1", 0), GAME, max_clients=1000)
    clients, sends = 150, 10

    async def main():
        gate = asyncio.Event()

        @gw.route(1)
        async def gated(client, packet):
            await gate.wait()
            return packet.body

        task = await serving(gw)
        conns = [await aio.connect(gw.address, GAME, timeout=20) for _ in range(clients)]
        for i in range(sends):  # separate reads: one event each on the server
            for conn in conns:
                await conn.send(b"%d" % i, msg_id=1)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        gate.set()
        for conn in conns:
            assert [(await conn.recv()).body for _ in range(sends)] == [
                b"%d" % i for i in range(sends)
            ]
            await conn.close()
        await cancel(task)

    run(main(), timeout=60)
    assert gw.stats()["packets_out"] == clients * sends


def test_async_handlers_on_a_started_gateway_run_on_a_loop_per_handler_thread():
    gw = sw.Gateway(("127.0.0.1", 0), GAME, handler_threads=2)
    loops = set()
    main_thread = threading.get_ident()
    on_main = []

    @gw.route(1)
    async def echo(client, packet):
        loops.add(id(asyncio.get_running_loop()))
        on_main.append(threading.get_ident() == main_thread)
        await asyncio.sleep(0.001 * (int(packet.body) % 3))
        return packet.body

    @gw.route(2)
    def plain(client, packet):
        return b"p" + packet.body

    def client(results, i):
        with sw.connect(gw.address, GAME, timeout=10) as conn:
            items = [(b"%d" % n, 2 if n % 4 == 3 else 1) for n in range(30)]
            for body, msg_id in items:
                conn.send(body, msg_id=msg_id)
            got = [conn.recv().body for _ in items]
            results[i] = got == [b if m == 1 else b"p" + b for b, m in items]

    with gw:
        results = {}
        threads = [threading.Thread(target=client, args=(results, i)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert results == {i: True for i in range(6)}
    assert len(loops) == 2  # one loop per handler thread
    assert not any(on_main)
    assert not gw.running


def test_serve_forever_with_async_handlers_stops_from_a_handler():
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    disconnected = []

    @gw.route(1)
    async def quit_(client, packet):
        await asyncio.sleep(0.01)
        gw.stop()
        return b"bye"

    @gw.on_disconnect
    async def bye(client, reason):
        disconnected.append(reason)

    def client():
        while not gw.running:
            threading.Event().wait(0.01)
        with sw.connect(gw.address, GAME, timeout=10) as conn:
            assert conn.request(b"", msg_id=1).body == b"bye"

    t = threading.Thread(target=client)
    t.start()
    gw.serve_forever()
    t.join(10)
    assert disconnected == ["stopped"]


@pytest.mark.parametrize("mode", ["serve", "start"])
def test_a_process_exits_0_with_async_handlers_running(mode):
    """The process ends while a client waits on a handler that never returns."""
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        import sockwire as sw
        from sockwire import aio

        GAME = sw.PacketFormat("!IH", ("length", "msg_id"))
        gw = sw.Gateway(("127.0.0.1", 0), GAME)

        @gw.route(1)
        async def forever(client, packet):
            await asyncio.sleep(3600)

        async def main():
            if {mode!r} == "serve":
                asyncio.create_task(gw.serve())
                while not gw.running:
                    await asyncio.sleep(0.01)
            else:
                gw.start()
            conns = [await aio.connect(gw.address, GAME, timeout=5) for _ in range(3)]
            for conn in conns:
                await conn.send(b"", msg_id=1)
            await asyncio.sleep(0.1)
            print("exiting", flush=True)

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout


def test_cancelled_serve_cancels_handlers_that_never_return(run):
    """A stuck async handler cannot hold the stop forever: 5 s after the cancellation it is
    cancelled (logged as its error), and the client still gets on_disconnect."""
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    reasons = []

    async def main():
        started = asyncio.Event()

        @gw.route(1)
        async def stuck(client, packet):
            started.set()
            await asyncio.sleep(3600)

        @gw.on_disconnect
        def bye(client, reason):
            reasons.append(reason)

        task = await serving(gw)
        conn = await aio.connect(gw.address, GAME, timeout=5)
        await conn.send(b"", msg_id=1)
        await started.wait()
        began = asyncio.get_running_loop().time()
        await cancel(task)
        assert 4.5 < asyncio.get_running_loop().time() - began < 15
        await conn.close()

    run(main())
    assert reasons == ["stopped"]
    assert gw.stats()["handler_errors"] == 1
