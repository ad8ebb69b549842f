"""TLS with rustls, interoperating with Python's ssl module in both directions, certificates
made in the test with trustme."""

import socket
import ssl
import threading
import time

import pytest

import sockwire as sw


def ssl_server(pki, require_client_cert=False, handler=None):
    """A Python ssl server in a thread; returns its address. `handler(sslsock)` serves one
    connection (default: upper-case echo until EOF)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki["trustme_server"].configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki["trustme_ca"].configure_trust(ctx)
    srv = socket.create_server(("127.0.0.1", 0))
    errors = []

    def echo(s):
        while data := s.recv(65536):
            s.sendall(data.upper())

    def serve():
        with srv:
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as s:
                    (handler or echo)(s)
            except (ssl.SSLError, OSError) as exc:
                errors.append(exc)

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname(), errors


def ssl_client_context(pki, with_cert=False):
    ctx = ssl.create_default_context()
    pki["trustme_ca"].configure_trust(ctx)
    if with_cert:
        pki["trustme_client"].configure_cert(ctx)
    return ctx


def test_sockwire_client_python_server(pki):
    addr, errors = ssl_server(pki)
    tls = sw.TlsConfig.client(ca=pki["ca"])
    with sw.create_client(addr, timeout=5, tls=tls) as s:
        assert s.tls_version() in ("TLSv1.3", "TLSv1.2")
        s.sendall(b"hello over tls")
        assert s.recv(100) == b"HELLO OVER TLS"
        big = bytes(range(256)) * 4000  # 1 MB: many records, many chunks
        got = bytearray()

        def read():
            while len(got) < len(big):
                got.extend(s.recv(65536))

        t = threading.Thread(target=read)
        t.start()
        s.sendall(big)
        t.join(10)
        assert bytes(got) == big.upper()
    assert errors == []


def test_python_client_sockwire_server(pki):
    tls = sw.TlsConfig.server(pki["cert"], pki["key"])
    with sw.server_listener(("127.0.0.1", 0), 4, tls=tls) as lst:
        result = []

        def client():
            ctx = ssl_client_context(pki)
            raw = socket.create_connection(lst.getsockname())
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(sw.PacketFormat().pack(b"ping"))
                result.append((s.recv(100), s.version()))

        t = threading.Thread(target=client)
        t.start()
        conn = sw.Connection(sw.accept_client_connect(lst))
        packet = conn.recv(timeout=5)
        conn.send(packet.body + b"/pong")
        t.join(5)
        conn.close()
    assert result[0][0] == sw.PacketFormat().pack(b"ping/pong")
    assert result[0][1] in ("TLSv1.3", "TLSv1.2")


def test_connection_over_tls_both_ways(pki):
    fmt = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))
    server_tls = sw.TlsConfig.server(pki["cert"], pki["key"])
    with sw.server_listener(("127.0.0.1", 0), 4, tls=server_tls) as lst:
        # A TLS handshake needs both ends at once: the server accepts in a thread.
        accepted = []
        t = threading.Thread(target=lambda: accepted.append(sw.accept_client_connect(lst)))
        t.start()
        client = sw.connect(
            ("localhost", lst.getsockname()[1]),
            fmt,
            timeout=5,
            tls=sw.TlsConfig.client(ca=pki["ca"]),
        )
        t.join(5)
        server = sw.Connection(accepted[0], fmt)
        assert len(lst.clients) == 1

        def pump():
            for i in range(500):
                client.send(i.to_bytes(2, "big"), msg_id=1)
            client.shutdown_write()  # close_notify, then FIN

        t = threading.Thread(target=pump)
        t.start()
        got = [int.from_bytes(p.body, "big") for p in server]  # ends at the clean EOF
        t.join()
        assert got == list(range(500))
        server.send(b"bye", msg_id=2)
        assert client.recv() == sw.Packet(b"bye", msg_id=2)
        client.close()
        server.close()


@pytest.mark.parametrize("side", ["sockwire-server", "python-server"])
def test_mutual_tls(pki, side):
    if side == "python-server":
        addr, errors = ssl_server(pki, require_client_cert=True)
        tls = sw.TlsConfig.client(ca=pki["ca"], cert=pki["client_cert"], key=pki["client_key"])
        with sw.create_client(addr, timeout=5, tls=tls) as s:
            s.sendall(b"mtls")
            assert s.recv(10) == b"MTLS"
        assert errors == []
        # without a client certificate the python server refuses
        addr, errors = ssl_server(pki, require_client_cert=True)
        with pytest.raises((ssl.SSLError, ConnectionError, sw.ConnectionClosed)):
            with sw.create_client(addr, timeout=5, tls=sw.TlsConfig.client(ca=pki["ca"])) as s:
                s.sendall(b"x")
                if s.recv(10) == b"":
                    raise sw.ConnectionClosed("refused")
        return
    tls = sw.TlsConfig.server(pki["cert"], pki["key"], client_ca=pki["ca"])
    with sw.server_listener(("127.0.0.1", 0), 4, tls=tls) as lst:
        lst.settimeout(5)
        outcome = []

        def client(with_cert):
            ctx = ssl_client_context(pki, with_cert=with_cert)
            try:
                raw = socket.create_connection(lst.getsockname())
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"hi")
                    outcome.append(s.recv(10))
            except (ssl.SSLError, OSError) as exc:
                outcome.append(exc)

        t = threading.Thread(target=client, args=(True,))
        t.start()
        conn = sw.accept_client_connect(lst)
        assert conn.recv(10) == b"hi"
        conn.sendall(b"ok")
        t.join(5)
        assert outcome == [b"ok"]
        conn.close()
        # a client without a certificate is refused during the handshake
        t = threading.Thread(target=client, args=(False,))
        t.start()
        with pytest.raises(ssl.SSLError):
            sw.accept_client_connect(lst)
        t.join(5)
        assert len(lst.clients) == 0


def test_tls_socket_cannot_leak_to_a_plain_stdlib_socket(pki):
    addr, _ = ssl_server(pki)
    with sw.create_client(addr, timeout=5, tls=sw.TlsConfig.client(ca=pki["ca"])) as s:
        with pytest.raises(ValueError, match="bypass TLS"):
            s.to_stdlib()


def test_shutdown_write_after_the_peer_replied_and_closed(pki):
    """The README's pattern against a server that replies, then closes: ssl's
    shutdown(SHUT_WR) succeeds here, and so must ours (our close_notify may draw a reset)."""

    def reply_and_close(s):
        s.sendall(s.recv(100).upper())

    for _ in range(3):
        addr, errors = ssl_server(pki, handler=reply_and_close)
        tls = sw.TlsConfig.client(ca=pki["ca"])
        with sw.connect(addr, sw.PacketFormat("!I"), timeout=5, tls=tls) as conn:
            conn.send(b"ping")
            reply = conn.socket.recv(100)
            assert reply.endswith(b"PING")
            time.sleep(0.1)  # the server has closed
            conn.shutdown_write()
            conn.socket.shutdown(sw.SHUT_WR)
        assert not errors


def test_pem_bytes_work_like_files(pki):
    """trustme (and most fixtures) hand out PEM bytes, as ssl's cadata takes them."""
    ca, server = pki["trustme_ca"], pki["trustme_server"]
    server_tls = sw.TlsConfig.server(
        server.cert_chain_pems[0].bytes(), server.private_key_pem.bytes()
    )
    assert "PEM bytes" in repr(server_tls)
    listener = sw.server_listener(("127.0.0.1", 0), 2, tls=server_tls)
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(sw.accept_client_connect(listener)))
    t.start()
    client_tls = sw.TlsConfig.client(ca=ca.cert_pem.bytes())
    with sw.create_client(listener.getsockname(), timeout=5, tls=client_tls) as c:
        t.join(5)
        accepted[0].sendall(b"hello")
        assert c.recv(5) == b"hello"
    accepted[0].close()
    listener.close()


def test_a_huge_recv_on_a_tls_socket_returns_what_is_there(tls_pair):
    """recv(2**40) aborted the process; a TLS read returns what one read decrypts."""
    client, server = tls_pair
    server.sendall(b"small")
    assert client.recv(2**40) == b"small"


def test_wrong_hostname_is_a_verification_error(pki):
    addr, _ = ssl_server(pki)
    tls = sw.TlsConfig.client(ca=pki["ca"], server_name="wrong.example")
    start = time.monotonic()
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        sw.create_client(addr, timeout=5, tls=tls)
    assert time.monotonic() - start < 5
    assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
    assert "Hostname mismatch" in info.value.verify_message


def test_untrusted_ca_is_a_verification_error(pki):
    addr, _ = ssl_server(pki)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        sw.create_client(addr, timeout=5, tls=sw.TlsConfig.client(ca=pki["other_ca"]))


def test_insecure_skips_verification(pki):
    addr, _ = ssl_server(pki)
    tls = sw.TlsConfig.client(insecure=True, server_name="anything.example")
    with sw.create_client(addr, timeout=5, tls=tls) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"X"


def test_python_client_rejects_an_untrusted_sockwire_server(pki):
    tls = sw.TlsConfig.server(pki["cert"], pki["key"])
    with sw.server_listener(("127.0.0.1", 0), 4, tls=tls) as lst:
        lst.settimeout(5)
        errors = []

        def client():
            ctx = ssl.create_default_context()  # the system CAs, not ours
            try:
                raw = socket.create_connection(lst.getsockname())
                ctx.wrap_socket(raw, server_hostname="localhost")
            except ssl.SSLCertVerificationError as exc:
                errors.append(exc)

        t = threading.Thread(target=client)
        t.start()
        with pytest.raises(ssl.SSLError):
            sw.accept_client_connect(lst)  # the client's alert
        t.join(5)
        assert len(errors) == 1


def test_plaintext_client_on_a_tls_port(pki):
    tls = sw.TlsConfig.server(pki["cert"], pki["key"])
    with sw.server_listener(("127.0.0.1", 0), 4, tls=tls) as lst:
        lst.settimeout(5)
        with socket.create_connection(lst.getsockname()) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER"):
                sw.accept_client_connect(lst)
        assert len(lst.clients) == 0


def test_silent_client_times_out_the_server_handshake(pki):
    tls = sw.TlsConfig.server(pki["cert"], pki["key"])
    with sw.server_listener(("127.0.0.1", 0), 4, tls=tls) as lst:
        lst.settimeout(0.3)
        with socket.create_connection(lst.getsockname()):
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                sw.accept_client_connect(lst)
            assert time.monotonic() - start < 3


def test_tls_client_to_a_plaintext_server(pki):
    srv = socket.create_server(("127.0.0.1", 0))

    def answer():
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(ssl.SSLError, match="does not speak TLS"):
        sw.create_client(srv.getsockname(), timeout=5, tls=sw.TlsConfig.client(ca=pki["ca"]))
    srv.close()


def test_silent_server_times_out_the_client_handshake(pki):
    with socket.create_server(("127.0.0.1", 0)) as silent:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sw.create_client(
                silent.getsockname(), timeout=0.3, tls=sw.TlsConfig.client(ca=pki["ca"])
            )
        assert time.monotonic() - start < 3


def test_config_errors(pki, tmp_path):
    with pytest.raises(FileNotFoundError, match="nonexistent") as info:
        sw.TlsConfig.server(tmp_path / "nonexistent.pem", pki["key"])
    assert info.value.filename == str(tmp_path / "nonexistent.pem")
    with pytest.raises(FileNotFoundError):
        sw.TlsConfig.client(ca=tmp_path / "missing-ca.pem")
    with pytest.raises(ValueError, match="no PEM certificate"):
        sw.TlsConfig.client(ca=b"not a certificate")
    with pytest.raises(ValueError, match="both cert and key"):
        sw.TlsConfig.client(cert=pki["client_cert"])
    with pytest.raises(TypeError, match=r"TlsConfig\.client"):
        sw.create_client(("127.0.0.1", 1), tls=sw.TlsConfig.server(pki["cert"], pki["key"]))
    with pytest.raises(TypeError, match=r"TlsConfig\.server"):
        sw.server_listener(("127.0.0.1", 0), 1, tls=sw.TlsConfig.client())
    assert repr(sw.TlsConfig.client(insecure=True)).startswith("TlsConfig.client(")
    assert sw.TlsConfig.server(pki["cert"], pki["key"]).side == "server"
