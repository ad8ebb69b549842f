"""Codec benchmark: sockwire's per-packet pipeline against the same pipeline in Python, and TLS
bulk throughput against Python's ssl, in one run.

(1) pack + unpack of 512-byte JSON-like bodies, zstd + aes-256-gcm over a `!IHB` header,
    vs struct + zstandard + cryptography's AESGCM (nonce || ciphertext || tag, header as AAD);
(2) the same with lz4 alone (vs lz4.frame) and (3) chacha20-poly1305 alone (vs cryptography);
(4) TLS bulk: 256 MiB over loopback, sockwire (rustls) vs ssl (OpenSSL), both ends alike.

Targets: >= 1.5x the Python pipeline for zstd + AES-GCM (the same zstd library on both
sides), >= 2x for lz4 and chacha20 alone, >= 1x ssl on bulk. Figures are taken as
bench/_harness.py says (interleaved rounds, median; TLS peer and measuring process pinned).
Run: python bench/bench_codecs.py [--rounds N] [--quick] [--json FILE]   (needs the test
extras: zstandard, lz4, cryptography, trustme)
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import ssl
import struct
import tempfile
import time

import lz4.frame
import trustme
import zstandard
from _harness import Bench, start_peer
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

import sockwire

HDR = struct.Struct("!IHB")
KEY = bytes(range(32))
BODY = json.dumps(
    [{"id": i, "name": f"player{i}", "x": i * 1.5, "hp": 100 - i} for i in range(12)]
).encode()[:512]


def python_pipeline(compress, decompress, aead, flags):
    """pack/unpack in Python: header with struct, then compress, then seal with the header as
    associated data."""

    def pack(body: bytes, msg_id: int) -> bytes:
        payload = compress(body) if compress else body
        if aead is None:
            return HDR.pack(len(payload), msg_id, flags) + payload
        nonce = os.urandom(12)
        header = HDR.pack(12 + len(payload) + 16, msg_id, flags)
        return header + nonce + aead.encrypt(nonce, payload, header)

    def unpack(frame: bytes) -> tuple[int, bytes]:
        _length, msg_id, _flags = HDR.unpack_from(frame)
        payload = frame[HDR.size :]
        if aead is not None:
            payload = aead.decrypt(payload[:12], payload[12:], frame[: HDR.size])
        return msg_id, decompress(payload) if decompress else payload

    return pack, unpack


def sockwire_pipeline(fmt: sockwire.PacketFormat):
    def pack(body: bytes, msg_id: int) -> bytes:
        return fmt.pack(body, msg_id=msg_id)

    def unpack(frame: bytes) -> tuple[int, bytes]:
        p = fmt.unpack(frame)
        return p.msg_id, p.body

    return pack, unpack


def time_pipeline(pack, unpack, count: int):
    """A contender: the seconds `count` pack+unpack calls take."""

    def run() -> float:
        start = time.perf_counter()
        for i in range(count):
            msg_id, body = unpack(pack(BODY, i & 0xFFFF))
        elapsed = time.perf_counter() - start
        assert body == BODY and msg_id == (count - 1) & 0xFFFF
        return elapsed

    return run


def bench_pipelines(bench: Bench, count: int) -> None:
    header = ("!IHB", ("length", "msg_id", "flags"))
    zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    cases = [
        (
            "(1) zstd + aes-256-gcm, 512-byte bodies",
            sockwire.PacketFormat(
                *header, compress="zstd", cipher=sockwire.Cipher("aes-256-gcm", KEY)
            ),
            python_pipeline(zc.compress, zd.decompress, AESGCM(KEY), 3),
            1.5,
        ),
        (
            "(2) lz4 frame alone",
            sockwire.PacketFormat(*header, compress="lz4"),
            python_pipeline(lz4.frame.compress, lz4.frame.decompress, None, 1),
            2,
        ),
        (
            "(3) chacha20-poly1305 alone",
            sockwire.PacketFormat(*header, cipher=sockwire.Cipher("chacha20-poly1305", KEY)),
            python_pipeline(None, None, ChaCha20Poly1305(KEY), 2),
            2,
        ),
    ]
    for name, fmt, (py_pack, py_unpack), target in cases:
        sw_pack, sw_unpack = sockwire_pipeline(fmt)
        # Each side's frames decode with the other side's code: the formats are the same.
        assert sw_unpack(py_pack(BODY, 1)) == (1, BODY)
        assert py_unpack(sw_pack(BODY, 1)) == (1, BODY)
        bench.compare(
            name,
            {"sockwire": time_pipeline(sw_pack, sw_unpack, count)},
            {"python": time_pipeline(py_pack, py_unpack, count)},
            work=count,
            unit="us per pack+unpack",
            target=target,
            per_op=True,
        )


CHUNK = b"\x5a" * (1 << 20)


def make_certs() -> pathlib.Path:
    d = pathlib.Path(tempfile.mkdtemp())
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(d / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    cert.private_key_pem.write_to_path(d / "key.pem")
    return d


def _tls_sender(port_q, impl: str, certs: str, total: int) -> None:
    certs = pathlib.Path(certs)
    if impl == "sockwire":
        tls = sockwire.TlsConfig.server(certs / "cert.pem", certs / "key.pem")
        with sockwire.server_listener(("127.0.0.1", 0), 1, tls=tls) as lst:
            port_q.put(lst.getsockname()[1])
            with sockwire.accept_client_connect(lst) as conn:
                for _ in range(total // len(CHUNK)):
                    conn.sendall(CHUNK)
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port_q.put(srv.getsockname()[1])
        raw, _ = srv.accept()
        with ctx.wrap_socket(raw, server_side=True) as conn:
            for _ in range(total // len(CHUNK)):
                conn.sendall(CHUNK)


def tls_bulk(impl: str, certs: pathlib.Path, total: int) -> float:
    """Seconds to receive `total` bytes over TLS, both ends using `impl`."""
    proc, port = start_peer(_tls_sender, impl, str(certs), total)
    if impl == "sockwire":
        tls = sockwire.TlsConfig.client(ca=certs / "ca.pem")
        conn = sockwire.create_client(("127.0.0.1", port), timeout=30, tls=tls)
    else:
        context = ssl.create_default_context(cafile=certs / "ca.pem")
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
    received = 0
    start = time.perf_counter()
    with conn:
        while data := conn.recv(65536):
            received += len(data)
            if received >= total:
                break
    elapsed = time.perf_counter() - start
    proc.join(10)
    assert received == total, (received, total)
    return elapsed


def bench_tls(bench: Bench, mib: int) -> None:
    certs = make_certs()
    bench.compare(
        f"(4) TLS bulk, {mib} MiB",
        {"sockwire": lambda: tls_bulk("sockwire", certs, mib << 20)},
        {"ssl": lambda: tls_bulk("ssl", certs, mib << 20)},
        work=mib,
        unit="MiB/s",
        target=1,
    )


def main() -> None:
    bench = Bench("bench_codecs", __doc__.splitlines()[0])
    bench_pipelines(bench, 2_000 if bench.quick else 50_000)
    bench_tls(bench, 16 if bench.quick else 256)
    bench.finish()


if __name__ == "__main__":
    main()
