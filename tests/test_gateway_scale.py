"""10,000 concurrent clients on one Gateway: each makes framed round trips, none fails, the
client group counts them right throughout, and one broadcast reaches all of them.

The clients run in a child process (plain sockets on one epoll loop): 10,000 connections are
20,000 file descriptors, more than one process may hold here (the hard limit is 20,000).
"""

import resource
import subprocess
import sys
import textwrap
import time

import sockwire as sw

CLIENTS = 10_000

CLIENT_SCRIPT = textwrap.dedent(
    """
    import resource, selectors, socket, struct, sys

    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, i)
    pending = {}  # index -> bytes still expected

    def frame(body):
        return struct.pack("!I", len(body)) + body

    def run(rounds):
        done = 0
        waiting = set(range(n))
        for i in waiting:
            sel.modify(socks[i], selectors.EVENT_WRITE, i)
        buffers = {i: b"" for i in waiting}
        counts = {i: 0 for i in waiting}
        while waiting:
            for key, mask in sel.select(timeout=30) or [(None, 0)]:
                if key is None:
                    sys.exit("stalled: %d clients not done" % len(waiting))
                i = key.data
                s = socks[i]
                if mask & selectors.EVENT_WRITE:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        sys.exit("connect failed")
                    s.send(frame(b"client %d round %d" % (i, counts[i])))
                    sel.modify(s, selectors.EVENT_READ, i)
                    continue
                data = s.recv(65536)
                if not data:
                    sys.exit("closed by the gateway")
                buffers[i] += data
                want = frame(b"client %d round %d" % (i, counts[i]))
                if len(buffers[i]) < len(want):
                    continue
                if buffers[i] != want:
                    sys.exit("wrong reply: %r" % buffers[i])
                buffers[i] = b""
                counts[i] += 1
                if counts[i] == rounds:
                    waiting.discard(i)
                    sel.unregister(s)
                    sel.register(s, selectors.EVENT_READ, i)
                    done += 1
                else:
                    sel.modify(s, selectors.EVENT_WRITE, i)
        return done

    print("round trips", run(3), flush=True)
    sys.stdin.readline()  # the broadcast is on its way
    want = frame(b"to everyone")
    got = {i: b"" for i in range(n)}
    reached = 0
    while reached < n:
        events = sel.select(timeout=30)
        if not events:
            sys.exit("broadcast reached only %d" % reached)
        for key, _ in events:
            i = key.data
            got[i] += socks[key.data].recv(65536)
            if got[i] == want:
                reached += 1
                sel.unregister(socks[i])
    print("broadcast reached", reached, flush=True)
    """
)


def test_ten_thousand_clients_round_trips_and_one_broadcast():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gw = sw.Gateway(("127.0.0.1", 0), max_clients=CLIENTS)
    gw.route()(lambda client, packet: packet.body)
    with gw:
        host, port = gw.address
        child = subprocess.Popen(
            [sys.executable, "-c", CLIENT_SCRIPT, host, str(port), str(CLIENTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            counts = []
            line = child.stdout.readline()
            assert line.split() == ["round", "trips", str(CLIENTS)], child.stderr.read()
            assert len(gw.clients) == CLIENTS
            stats = gw.stats()
            assert stats["active"] == CLIENTS and stats["rejected"] == 0
            assert stats["packets_in"] == stats["packets_out"] == 3 * CLIENTS
            assert gw.broadcast(b"to everyone") == CLIENTS
            child.stdin.write("go\n")
            child.stdin.flush()
            line = child.stdout.readline()
            assert line.split() == ["broadcast", "reached", str(CLIENTS)], child.stderr.read()
            child.stdin.close()
            assert child.wait(60) == 0, child.stderr.read()
            deadline = time.monotonic() + 30
            while len(gw.clients) and time.monotonic() < deadline:
                counts.append(len(gw.clients))
                time.sleep(0.05)
            assert len(gw.clients) == 0
            assert all(0 <= c <= CLIENTS for c in counts)
            assert gw.stats()["protocol_errors"] == 0
        finally:
            child.kill()
