"""A TLS echo server and client, certificates made on the spot with trustme (as a test would).

The server uses sockwire (rustls); one client is sockwire, the other Python's own ssl module:
both talk to the same server. Then a client that does not trust the CA is refused with
ssl.SSLCertVerificationError.

Run: python examples/tls_echo.py   (needs `pip install trustme`)
"""

import pathlib
import socket
import ssl
import tempfile
import threading

import trustme

import sockwire

workdir = pathlib.Path(tempfile.mkdtemp())
ca = trustme.CA()
cert = ca.issue_cert("localhost", "127.0.0.1")
ca.cert_pem.write_to_path(workdir / "ca.pem")
cert.cert_chain_pems[0].write_to_path(workdir / "cert.pem")
cert.private_key_pem.write_to_path(workdir / "key.pem")

server_tls = sockwire.TlsConfig.server(workdir / "cert.pem", workdir / "key.pem")
listener = sockwire.server_listener(("127.0.0.1", 0), 8, tls=server_tls)
listener.settimeout(5)  # also bounds each client's handshake
host, port = listener.getsockname()


def serve(clients: int) -> None:
    for _ in range(clients):
        try:
            conn = sockwire.accept_client_connect(listener)
        except ssl.SSLError as exc:
            print(f"server: handshake refused: {exc.reason}")
            continue
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())


server = threading.Thread(target=serve, args=(3,))
server.start()

# 1. a sockwire client
client_tls = sockwire.TlsConfig.client(ca=workdir / "ca.pem")
with sockwire.create_client(("localhost", port), timeout=5, tls=client_tls) as s:
    s.sendall(b"hello from sockwire")
    print(f"sockwire client ({s.tls_version()}) <- {s.recv(100)!r}")

# 2. Python's ssl module against the same server
ctx = ssl.create_default_context(cafile=workdir / "ca.pem")
with ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost") as t:
    t.sendall(b"hello from ssl")
    print(f"python ssl client ({t.version()}) <- {t.recv(100)!r}")

# 3. a client that trusts only the system CAs: refused
try:
    sockwire.create_client(("localhost", port), timeout=5, tls=sockwire.TlsConfig.client())
except ssl.SSLCertVerificationError as exc:
    print(f"untrusted server refused by the client: {exc.verify_message}")

server.join()
listener.close()
