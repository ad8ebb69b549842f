"""What a compressed body may cost: bodies that announce more output than they hold are refused
(or decoded) at a cost that follows their own length, never the size they announce.

The lying bodies are built with the reference packages where they can write one (a header from
`lz4.frame.compress_begin`, a block from `lz4.block`, a literal from `cramjam.snappy`), and by
hand otherwise; the reference packages confirm what each one announces."""

import gzip
import json
import os
import struct
import subprocess
import sys
import time
import zlib

import brotli
import cramjam
import lz4.block
import lz4.frame
import pytest
import zstandard

import sockwire as sw

MIB = 1 << 20
DEFAULT_MAX_BODY = 8 * MIB


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def snappy_announcing(n):
    """cramjam's raw snappy of a 9-byte literal, its length prefix replaced by `n`."""
    honest = bytes(cramjam.snappy.compress_raw(b"abcdefghi"))
    body = varint(n) + honest[len(varint(9)) :]
    assert cramjam.snappy.decompress_raw_len(body) == n
    return body


def lz4_announcing(content_size, blocks, block_size=lz4.frame.BLOCKSIZE_MAX64KB):
    """A frame header from lz4.frame (stating `content_size`, or none for 0), the given blocks
    (each after its size word), and the end mark."""
    context = lz4.frame.create_compression_context()
    header = lz4.frame.compress_begin(
        context, source_size=content_size, block_size=block_size, auto_flush=True
    )
    body = header + b"".join(struct.pack("<I", word) + data for word, data in blocks) + bytes(4)
    assert lz4.frame.get_frame_info(body)["content_size"] == content_size
    return body


def lz4_block(data):
    block = lz4.block.compress(data, store_size=False)
    return (len(block), block)


def zstd_announcing(n):
    """One raw byte in a single-segment frame whose 8-byte content size says `n`."""
    body = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", n) + b"\x09\x00\x00a"
    assert zstandard.get_frame_parameters(body).content_size == n
    return body


def zstd_with_window(log):
    """Four raw bytes in a frame without a content size whose window is 2**log bytes."""
    body = b"\x28\xb5\x2f\xfd\x00" + bytes([(log - 10) << 3]) + b"\x21\x00\x00abcd"
    assert zstandard.get_frame_parameters(body).window_size == 1 << log
    return body


def brotli_announcing(mlen_minus_1):
    """A brotli stream (window 16 MiB) whose first metablock announces `mlen_minus_1 + 1`
    stored bytes and holds 12."""
    bits = 1 | 7 << 1 | 2 << 5 | mlen_minus_1 << 7 | 1 << 31
    return struct.pack("<I", bits) + b"abcdefghijkl"


# Bodies of 13 to 32 bytes that announce far more output than they hold, against the default
# max_body of 8 MiB. Some are refused (ProtocolError); the lz4 frame with 4 MiB blocks and the
# zstd frame with a 128 MiB window are legal and decode to what they hold.
LYING = {
    "snappy": [
        snappy_announcing(DEFAULT_MAX_BODY - 1),
        snappy_announcing(MIB),
        snappy_announcing(DEFAULT_MAX_BODY + 1),
    ],
    "lz4": [
        lz4_announcing(DEFAULT_MAX_BODY - 1, [lz4_block(b"a")]),
        lz4_announcing(0, [lz4_block(bytes(100))], lz4.frame.BLOCKSIZE_MAX4MB),
        lz4_announcing(0, [(4 * MIB - 1, b"abcdef")], lz4.frame.BLOCKSIZE_MAX4MB),
        lz4_announcing(DEFAULT_MAX_BODY - 1, [(1 | 1 << 31, b"a")] * 2),
    ],
    "zstd": [
        zstd_announcing(DEFAULT_MAX_BODY - 1),
        zstd_announcing(300_000),
        zstd_with_window(27),
    ],
    "brotli": [brotli_announcing(0xFFFFFF), brotli_announcing(MIB - 1)],
    # a gzip header announcing 64 KiB of extra field; a stored deflate block announcing 64 KiB
    "gzip": [b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\xff\xffab"],
    "zlib": [b"\x78\x9c\x00\xff\xff\x00\x00abcdefgh"],
}
HONEST_BODIES = [b'{"player": 42, "action": "move"}', b"ok", b'{"id": 7, "pos": [1.5, -2.25]}']


@pytest.mark.parametrize("name", sorted(LYING))
def test_bodies_announcing_more_than_they_hold_cost_about_what_honest_ones_do(name):
    fmt = sw.PacketFormat("!I", compress=name)
    lying = [struct.pack("!I", len(b)) + b for b in LYING[name]]
    honest = [fmt.pack(b) for b in HONEST_BODIES]
    assert all(13 <= len(f) - 4 <= 32 for f in lying)
    assert [fmt.unpack(f).body for f in honest] == HONEST_BODIES

    def cost(frames, n=2000):
        started = time.perf_counter()
        for i in range(n):
            try:
                fmt.unpack(frames[i % len(frames)])
            except sw.ProtocolError:
                pass
        return time.perf_counter() - started

    # The best of a few runs of each, interleaved: noise only ever adds time. Before sizes
    # were checked, a lying body cost 90 to 2000 times an honest one.
    best_honest = best_lying = float("inf")
    for _ in range(5):
        best_honest = min(best_honest, cost(honest))
        best_lying = min(best_lying, cost(lying))
        if best_lying < 20 * best_honest:
            break
    assert best_lying < 20 * best_honest, (
        f"2000 lying {name} bodies took {best_lying * 1e3:.1f} ms, "
        f"2000 honest ones {best_honest * 1e3:.1f} ms"
    )


# Unpacks each lying body in a fresh process with max_body = 1 GiB, after an honest body of
# each algorithm (so the decoders' own per-thread state is in place), and reports how far peak
# memory grew and how long the slowest one took.
LIMIT_SCRIPT = r"""
import json, resource, struct, sys, time
import sockwire as sw

cases = json.loads(sys.argv[1])
formats = {}
for name in {name for name, _ in cases}:
    formats[name] = sw.PacketFormat("!I", compress=name, max_body=1 << 30)
    formats[name].unpack(formats[name].pack(b'{"warm": "up"}' * 10))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
slowest = 0.0
errors = []
for name, hex_body in cases:
    body = bytes.fromhex(hex_body)
    started = time.perf_counter()
    try:
        formats[name].unpack(struct.pack("!I", len(body)) + body)
        errors.append(None)
    except sw.ProtocolError as exc:
        errors.append(type(exc).__name__)
    slowest = max(slowest, time.perf_counter() - started)
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grew_kib": grew, "slowest": slowest, "errors": errors}))
"""


def test_a_body_announcing_a_gibibyte_is_refused_without_allocating_it():
    gib = 1 << 30
    cases = [
        # 15 bytes of raw snappy announcing 1 GiB - 1
        ("snappy", snappy_announcing(gib - 1)),
        ("lz4", lz4_announcing(gib - 1, [lz4_block(b"a")])),
        ("zstd", zstd_announcing(gib - 1)),
        ("brotli", brotli_announcing(0xFFFFFF)),
    ]
    assert len(cases[0][1]) == 15
    proc = subprocess.run(
        [sys.executable, "-c", LIMIT_SCRIPT, json.dumps([(n, b.hex()) for n, b in cases])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # ProtocolError itself: the sizes are within max_body, but not within what the bodies hold
    assert report["errors"] == ["ProtocolError"] * len(cases), report
    assert report["grew_kib"] < 4 * 1024, report
    # (when the announced size was zero-filled, peak memory grew by 1 GiB and it took 0.6 s)
    assert report["slowest"] < 0.1, report


@pytest.mark.parametrize(
    "name", ["zlib", "gzip", "lz4", "zstd", "zstd-no-size", "snappy", "brotli"]
)
def test_honest_bodies_decode_whatever_their_ratio(name):
    """Highly compressible bodies (4 MiB of zeros, a repeated block) and incompressible ones,
    from the reference writers, still decode under the default max_body."""
    writers = {
        "zlib": zlib.compress,
        "gzip": gzip.compress,
        # linked 64 KiB blocks with every checksum: matches reach across blocks
        "lz4": lambda b: lz4.frame.compress(
            b, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_checksum=True, content_checksum=True
        ),
        "zstd": zstandard.ZstdCompressor().compress,
        "zstd-no-size": zstandard.ZstdCompressor(write_content_size=False).compress,
        "snappy": lambda b: bytes(cramjam.snappy.compress_raw(b)),
        "brotli": lambda b: brotli.compress(b, quality=5),
    }
    fmt = sw.PacketFormat("!I", compress=name.split("-")[0])
    for body in (bytes(4 * MIB), os.urandom(3000) * 100, os.urandom(100_000), b""):
        payload = writers[name](body)
        if name == "lz4" and len(body) > 64 * 1024:
            assert lz4.frame.get_frame_info(payload)["block_linked"]
        assert fmt.unpack(struct.pack("!I", len(payload)) + payload).body == body
