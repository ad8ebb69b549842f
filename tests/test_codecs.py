"""Per-packet compression and encryption, against the reference Python implementations, both
ways: what sockwire writes they read, and what they write sockwire reads."""

import gzip
import os
import struct
import subprocess
import sys
import zlib

import brotli
import cramjam
import lz4.frame
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

import sockwire as sw

BODY = b'{"player": 42, "pos": [1.5, -2.25], "name": "alice", "items": [1, 2, 3]}' * 8
BODIES = [b"", b"x", BODY, os.urandom(3000), bytes(100_000)]

# name -> (what the reference writes, how the reference reads)
REFERENCE = {
    "zlib": [
        (zlib.compress, zlib.decompress),
        (lambda b: zlib.compress(b, 9), zlib.decompress),
        (lambda b: zlib.compress(b, 0), zlib.decompress),
    ],
    "gzip": [
        (gzip.compress, gzip.decompress),
        (lambda b: gzip.compress(b, mtime=0), gzip.decompress),
        # two gzip members are one stream to gzip.decompress, and to sockwire
        (lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:]), gzip.decompress),
    ],
    "lz4": [
        (lz4.frame.compress, lz4.frame.decompress),
        (lambda b: lz4.frame.compress(b, block_linked=False), lz4.frame.decompress),
        (lambda b: lz4.frame.compress(b, content_checksum=True), lz4.frame.decompress),
        (
            lambda b: lz4.frame.compress(b, block_size=lz4.frame.BLOCKSIZE_MAX4MB),
            lz4.frame.decompress,
        ),
    ],
    "zstd": [
        (zstandard.ZstdCompressor().compress, zstandard.ZstdDecompressor().decompress),
        (
            # no content size in the frame: sockwire takes its streaming path
            zstandard.ZstdCompressor(write_content_size=False).compress,
            lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
        ),
        (
            zstandard.ZstdCompressor(level=19, write_checksum=True).compress,
            zstandard.ZstdDecompressor().decompress,
        ),
    ],
    "snappy": [
        (
            lambda b: bytes(cramjam.snappy.compress_raw(b)),
            lambda b: bytes(cramjam.snappy.decompress_raw(b)),
        )
    ],
    "brotli": [
        (brotli.compress, brotli.decompress),
        (lambda b: brotli.compress(b, quality=1), brotli.decompress),
    ],
}

ALGORITHMS = sorted(REFERENCE)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("body", BODIES, ids=[f"{len(b)}B" for b in BODIES])
def test_reference_reads_what_sockwire_writes(name, body):
    fmt = sw.PacketFormat("!I", compress=name)
    frame = fmt.pack(body)
    (length,) = struct.unpack("!I", frame[:4])
    assert length == len(frame) - 4
    for _, reference_read in REFERENCE[name][:1]:
        assert reference_read(frame[4:]) == body
    assert fmt.unpack(frame).body == body


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("body", BODIES, ids=[f"{len(b)}B" for b in BODIES])
def test_sockwire_reads_what_the_reference_writes(name, body):
    fmt = sw.PacketFormat("!I", compress=name)
    for reference_write, _ in REFERENCE[name]:
        payload = reference_write(body)
        frame = struct.pack("!I", len(payload)) + payload
        assert fmt.unpack(frame).body == body


@pytest.mark.parametrize("name", ["zlib", "gzip", "zstd", "brotli"])
def test_levels_are_standard(name):
    for level in (1, 5, 9):
        fmt = sw.PacketFormat("!I", compress=sw.Compression(name, level=level))
        payload = fmt.pack(BODY)[4:]
        assert REFERENCE[name][0][1](payload) == BODY


def test_compression_arguments():
    assert sw.Compression("zstd").level == 3
    assert sw.Compression("lz4").level is None
    with pytest.raises(ValueError, match="unknown compression"):
        sw.Compression("rar")
    with pytest.raises(ValueError, match="level"):
        sw.Compression("zlib", level=12)
    with pytest.raises(ValueError, match="no compression levels"):
        sw.Compression("snappy", level=1)
    with pytest.raises(ValueError, match="flags"):
        sw.PacketFormat("!I", compress=sw.Compression("zlib", min_size=10))
    with pytest.raises(ValueError, match="strip"):
        sw.PacketFormat.length_field(0, 2, compress="zlib")
    assert repr(sw.Compression("zlib")) == "Compression('zlib', level=6, min_size=0)"


def test_min_size_and_the_flags_bit():
    fmt = sw.PacketFormat(
        "!IHB", ("length", "msg_id", "flags"), compress=sw.Compression("zlib", min_size=100)
    )
    small, big = fmt.pack(b"tiny", flags=4), fmt.pack(BODY, flags=4)
    assert small[6] == 4 and small[7:] == b"tiny"  # sent as is
    assert big[6] == 4 | 1 and zlib.decompress(big[7:]) == BODY
    assert fmt.unpack(big) == sw.Packet(BODY, flags=4)  # the pipeline's bit is cleared
    # A peer that compressed a small body anyway (bit 0 set) is understood.
    payload = zlib.compress(b"tiny")
    assert fmt.unpack(struct.pack("!IHB", len(payload), 0, 1) + payload).body == b"tiny"
    with pytest.raises(ValueError, match="flags bits"):
        fmt.pack(b"x", flags=1)


# Decodes a bomb read from a file, in a fresh process, and reports how far its peak memory
# grew: the bomb is made elsewhere so that making it does not set the peak.
BOMB_SCRIPT = r"""
import resource, struct, sys
import sockwire as sw

name, path = sys.argv[1], sys.argv[2]
payload = open(path, "rb").read()
fmt = sw.PacketFormat("!I", max_body=1 << 20, compress=name)
frame = struct.pack("!I", len(payload)) + payload
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    fmt.unpack(frame)
except sw.FrameTooLarge as exc:
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(f"FrameTooLarge limit={exc.limit} grew_kib={grew}")
"""

BOMB_WRITERS = {
    "zlib": lambda b: zlib.compress(b, 9),
    "gzip": lambda b: gzip.compress(b, 9),
    "lz4": lz4.frame.compress,
    "zstd": zstandard.ZstdCompressor().compress,
    "zstd-no-size": zstandard.ZstdCompressor(write_content_size=False).compress,
    "snappy": lambda b: bytes(cramjam.snappy.compress_raw(b)),
    "brotli": lambda b: brotli.compress(b, quality=1),
}


@pytest.fixture(scope="module")
def zeros():
    return bytes(128 << 20)


@pytest.mark.parametrize("name", sorted(BOMB_WRITERS))
def test_decompression_bombs_stop_at_max_body(name, zeros, tmp_path):
    """A 128 MiB bomb against max_body=1 MiB: FrameTooLarge, and memory stays near the cap."""
    path = tmp_path / "bomb"
    path.write_bytes(BOMB_WRITERS[name](zeros))
    algorithm = name.split("-")[0]
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, algorithm, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("FrameTooLarge limit=1048576"), proc.stdout
    grew_kib = int(proc.stdout.split("grew_kib=")[1])
    assert grew_kib < 16 * 1024, f"peak memory grew {grew_kib} KiB decoding a 128 MiB bomb"


def test_corrupt_compressed_body_is_a_protocol_error():
    for name in ALGORITHMS:
        fmt = sw.PacketFormat("!I", compress=name)
        with pytest.raises(sw.ProtocolError):
            fmt.unpack(struct.pack("!I", 9) + b"\x00garbage!")


# --- encryption -------------------------------------------------------------------------------

CIPHERS = {
    "aes-128-gcm": (16, AESGCM),
    "aes-256-gcm": (32, AESGCM),
    "chacha20-poly1305": (32, ChaCha20Poly1305),
}
GAME = ("!IHB", ("length", "msg_id", "flags"))


@pytest.mark.parametrize("name", sorted(CIPHERS))
@pytest.mark.parametrize("body", BODIES[:4], ids=[f"{len(b)}B" for b in BODIES[:4]])
def test_cryptography_decrypts_what_sockwire_encrypts(name, body):
    size, reference = CIPHERS[name]
    key = os.urandom(size)
    fmt = sw.PacketFormat(*GAME, cipher=sw.Cipher(name, key))
    frame = fmt.pack(body, msg_id=7)
    header, sealed = frame[:7], frame[7:]
    assert struct.unpack("!IHB", header) == (len(sealed), 7, 2)  # bit 1: encrypted
    assert len(sealed) == 12 + len(body) + 16
    assert reference(key).decrypt(sealed[:12], sealed[12:], header) == body


@pytest.mark.parametrize("name", sorted(CIPHERS))
def test_sockwire_decrypts_what_cryptography_encrypts(name):
    size, reference = CIPHERS[name]
    key = os.urandom(size)
    fmt = sw.PacketFormat(*GAME, cipher=sw.Cipher(name, key))
    nonce = os.urandom(12)
    header = struct.pack("!IHB", 12 + len(BODY) + 16, 9, 2)
    frame = header + nonce + reference(key).encrypt(nonce, BODY, header)
    assert fmt.unpack(frame) == sw.Packet(BODY, msg_id=9)


def test_compress_then_encrypt_matches_the_python_pipeline():
    key = AESGCM.generate_key(256)
    fmt = sw.PacketFormat(*GAME, compress="zstd", cipher=sw.Cipher("aes-256-gcm", key))
    frame = fmt.pack(BODY, msg_id=1)
    header, sealed = frame[:7], frame[7:]
    assert header[6] == 3
    plain = AESGCM(key).decrypt(sealed[:12], sealed[12:], header)
    assert zstandard.ZstdDecompressor().decompress(plain) == BODY
    # and the other way
    nonce = os.urandom(12)
    compressed = zstandard.ZstdCompressor().compress(BODY)
    header = struct.pack("!IHB", 12 + len(compressed) + 16, 2, 3)
    frame = header + nonce + AESGCM(key).encrypt(nonce, compressed, header)
    assert fmt.unpack(frame) == sw.Packet(BODY, msg_id=2)


def test_any_flipped_bit_fails_authentication():
    fmt = sw.PacketFormat(*GAME, cipher=sw.Cipher("chacha20-poly1305", bytes(32)))
    frame = fmt.pack(b"attack at dawn", msg_id=3)
    for i in range(4 * 8, len(frame) * 8):  # every bit after the length field
        bad = bytearray(frame)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(sw.AuthenticationError):
            fmt.unpack(bytes(bad))


def test_wrong_key_and_unencrypted_packets_fail():
    fmt = sw.PacketFormat(*GAME, cipher=sw.Cipher("aes-128-gcm", bytes(16)))
    other = sw.PacketFormat(*GAME, cipher=sw.Cipher("aes-128-gcm", b"\x01" * 16))
    with pytest.raises(sw.AuthenticationError, match="authentication failed"):
        other.unpack(fmt.pack(b"secret"))
    plain = sw.PacketFormat(*GAME).pack(b"forged")
    with pytest.raises(sw.AuthenticationError, match="unencrypted"):
        fmt.unpack(plain)
    with pytest.raises(sw.AuthenticationError, match="shorter"):
        fmt.unpack(struct.pack("!IHB", 5, 0, 2) + b"short")


def test_cipher_arguments():
    with pytest.raises(ValueError, match="32-byte key"):
        sw.Cipher("aes-256-gcm", bytes(16))
    with pytest.raises(ValueError, match="unknown cipher"):
        sw.Cipher("des", bytes(8))
    c = sw.Cipher("aes-128-gcm", bytes(16))
    assert "key=<16 bytes>" in repr(c) and "\\x00" not in repr(c)
    assert c == sw.Cipher("aes-128-gcm", bytes(16)) != sw.Cipher("aes-128-gcm", b"\x01" * 16)


def test_nonces_are_fresh():
    fmt = sw.PacketFormat("!I", cipher=sw.Cipher("aes-256-gcm", bytes(32)))
    nonces = {fmt.pack(b"same")[4:16] for _ in range(1000)}
    assert len(nonces) == 1000


def test_decoder_and_connection_run_the_pipeline(connection_pair):
    key = os.urandom(32)
    fmt = sw.PacketFormat(
        *GAME, compress=sw.Compression("lz4", min_size=32), cipher=sw.Cipher("aes-256-gcm", key)
    )
    stream = fmt.pack_many([b"a", BODY, b"c" * 500], msg_id=4)
    dec = fmt.decoder()
    got = [p for i in range(0, len(stream), 7) for p in dec.feed(stream[i : i + 7])]
    assert [p.body for p in got] == [b"a", BODY, b"c" * 500]
    client, server = connection_pair(fmt)
    client.send_many([BODY, b"x"], msg_id=5)
    assert [server.recv().body for _ in range(2)] == [BODY, b"x"]


def test_connection_closes_on_a_tampered_packet(connection_pair):
    fmt = sw.PacketFormat(*GAME, cipher=sw.Cipher("aes-256-gcm", bytes(32)))
    client, raw = connection_pair(fmt, raw=True)
    good = fmt.pack(b"fine")
    bad = bytearray(fmt.pack(b"evil"))
    bad[-1] ^= 0x80
    raw.sendall(good + bytes(bad))
    assert client.recv().body == b"fine"
    with pytest.raises(sw.AuthenticationError):
        client.recv()
    assert client.socket.fileno() == -1


def test_a_forked_child_never_reuses_the_parents_nonces():
    """Nonces come from a per-thread pool of OS randomness; a child must not inherit it."""
    fmt = sw.PacketFormat("!I", cipher=sw.Cipher("aes-256-gcm", bytes(32)))
    fmt.pack(b"fill the pool")  # the parent's pool now holds unused nonces
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next 10 nonces, then leave at once
        os.close(read_end)
        os.write(write_end, b"".join(fmt.pack(b"x")[4:16] for _ in range(10)))
        os._exit(0)
    os.close(write_end)
    child = b""
    while chunk := os.read(read_end, 4096):
        child += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = [fmt.pack(b"x")[4:16] for _ in range(10)]
    child_nonces = [child[i : i + 12] for i in range(0, len(child), 12)]
    assert len(child_nonces) == 10
    assert not set(parent) & set(child_nonces)


def counted_while(fn):
    """How far a pure-Python counter thread gets while `fn()` runs. The switch interval is
    raised so that the running thread is not made to hand the GIL over during the call: a
    count of 0 means `fn` held the GIL throughout."""
    import sys
    import threading
    import time

    count, stop = [0], threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1

    interval = sys.getswitchinterval()
    t = threading.Thread(target=counter)
    t.start()
    try:
        time.sleep(0.01)  # the counter is running
        sys.setswitchinterval(0.2)
        time.sleep(0.01)  # ... and this thread has the GIL back, for up to 0.2 s
        before = count[0]
        fn()
        return count[0] - before
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        t.join()


def test_large_bodies_are_compressed_and_opened_without_the_gil():
    # One call of some 30 ms each (well under the raised switch interval): long enough for a
    # loaded machine to schedule the counter while it runs.
    body = b'{"player": 42, "pos": [1.5, -2.25], "name": "alice"}' * 160_000  # 8 MB
    fmt = sw.PacketFormat("!I", compress="brotli", max_body=len(body))
    frame = fmt.pack(body)
    assert counted_while(lambda: fmt.pack(body)) > 0
    zfmt = sw.PacketFormat("!I", compress=sw.Compression("zlib", level=9), max_body=len(body))
    zframes = zfmt.pack(body) * 4
    decoder = zfmt.decoder()
    assert counted_while(lambda: decoder.feed(zframes)) > 0
    assert fmt.unpack(frame).body == body
    # A small body is not worth releasing the GIL for: the counter does not move.
    small = sw.PacketFormat("!I", compress="lz4")
    assert counted_while(lambda: [small.pack(b"x" * 100) for _ in range(1000)]) == 0


def test_level_ranges_read_like_python():
    with pytest.raises(ValueError, match=r"^zstd level must be -7 <= level <= 22, not 99$"):
        sw.Compression("zstd", level=99)
