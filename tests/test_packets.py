"""PacketFormat, Packet and Decoder: framing a byte stream, with Netty's vectors."""

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sockwire as sw

GAME = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))
HDR_GAME = struct.Struct("!IHB")
HELLO = b"HELLO, WORLD"
CA = b"\xca"


# --- PacketFormat from a struct header -------------------------------------------------------


def test_default_format_is_a_big_endian_u32_length():
    fmt = sw.PacketFormat()
    assert fmt.fields == ("length",)
    assert fmt.header_size == 4
    assert fmt.max_body == 8 << 20
    assert fmt.pack(b"abc") == b"\x00\x00\x00\x03abc"


def test_pack_matches_struct():
    frame = GAME.pack(b"hello", msg_id=1001, flags=3)
    assert frame == struct.pack("!IHB", 5, 1001, 3) + b"hello"
    assert GAME.header_size == struct.calcsize("!IHB")


@pytest.mark.parametrize(
    ("header", "names"),
    [
        ("!IH", ("length", "msg_id")),
        (">IH", ("length", "msg_id")),
        ("<IH", ("length", "msg_id")),
        ("=IH", ("length", "msg_id")),
        ("@IH", ("length", "msg_id")),
        ("IH", ("length", "msg_id")),  # no prefix: native order and alignment, as struct
        ("!QH", ("length", "msg_id")),
        ("<qh", ("length", "msg_id")),
        ("!HI", ("msg_id", "length")),
        ("@BI", ("msg_id", "length")),  # the int is aligned to 4 bytes
        ("!BxxI", ("msg_id", "length")),
        ("!LH", ("length", "msg_id")),
    ],
)
def test_header_layout_matches_struct(header, names):
    fmt = sw.PacketFormat(header, names)
    assert fmt.header_size == struct.calcsize(header)
    values = {"length": 3, "msg_id": 7}
    expected = struct.pack(header, *(values[n] for n in names)) + b"abc"
    assert fmt.pack(b"abc", msg_id=7) == expected
    assert fmt.unpack(expected) == sw.Packet(b"abc", msg_id=7)


def test_length_includes_header():
    fmt = sw.PacketFormat("!HH", ("length", "msg_id"), length_includes_header=True)
    assert fmt.pack(b"xy", msg_id=9) == struct.pack("!HH", 6, 9) + b"xy"
    assert fmt.unpack(struct.pack("!HH", 6, 9) + b"xy").body == b"xy"
    with pytest.raises(sw.ProtocolError):
        fmt.unpack(struct.pack("!HH", 3, 9))  # shorter than the header it includes


def test_user_fields_and_fixed_bytes():
    fmt = sw.PacketFormat("!2sIHQ", ("magic", "length", "msg_id", "session"))
    frame = fmt.pack(b"body", msg_id=5, magic=b"\xca\xfe", session=2**63 + 5)
    assert frame == struct.pack("!2sIHQ", b"\xca\xfe", 4, 5, 2**63 + 5) + b"body"
    pkt = fmt.unpack(frame)
    assert pkt.header == {"magic": b"\xca\xfe", "session": 2**63 + 5}
    assert pkt == sw.Packet(b"body", msg_id=5, magic=b"\xca\xfe", session=2**63 + 5)


def test_expect_checks_constants_and_fills_them_in():
    fmt = sw.PacketFormat("!2sIH", ("magic", "length", "msg_id"), expect={"magic": b"\xca\xfe"})
    frame = fmt.pack(b"x", msg_id=1)
    assert frame[:2] == b"\xca\xfe"
    assert fmt.unpack(frame).header == {"magic": b"\xca\xfe"}
    with pytest.raises(sw.ProtocolError, match="magic"):
        fmt.unpack(b"\xde\xad" + frame[2:])
    dec = fmt.decoder()
    with pytest.raises(sw.ProtocolError, match="magic"):
        dec.feed(b"\xde\xad\x00\x00\x00\x01")  # fails before the body arrives
    # the bad header (up to its length field) is skipped; the next frame decodes
    assert dec.feed(frame) == [sw.Packet(b"x", msg_id=1, magic=b"\xca\xfe")]


def test_signed_length_rejects_negatives():
    fmt = sw.PacketFormat("!i")
    with pytest.raises(sw.ProtocolError, match="negative"):
        fmt.unpack(struct.pack("!i", -1))
    with pytest.raises(sw.ProtocolError):
        fmt.decoder().feed(struct.pack("!i", -5) + b"xxxxx")


@pytest.mark.parametrize(
    ("header", "fields", "error"),
    [
        ("!IH", ("length",), ValueError),  # names and codes differ in number
        ("!H", ("msg_id",), ValueError),  # no length field
        ("!If", ("length", "x"), ValueError),  # float code not supported
        ("!2sH", ("length", "msg_id"), ValueError),  # length must be an integer
        ("!IH", ("length", "length"), ValueError),
    ],
)
def test_invalid_formats(header, fields, error):
    with pytest.raises(error):
        sw.PacketFormat(header, fields)


def test_pack_rejects_bad_values():
    with pytest.raises(ValueError, match="0 <= value <= 65535"):
        GAME.pack(b"", msg_id=70000)
    with pytest.raises(TypeError, match="length"):
        GAME.pack(b"", length=3)
    with pytest.raises(TypeError, match="no 'bogus' field"):
        GAME.pack(b"", bogus=1)
    with pytest.raises(TypeError):
        GAME.pack("text")
    with pytest.raises(sw.FrameTooLarge):
        sw.PacketFormat(max_body=4).pack(b"12345")
    with pytest.raises(ValueError, match="cannot hold"):
        sw.PacketFormat("!B", max_body=1000).pack(b"x" * 300)


def test_pack_takes_its_arguments_as_a_python_method_would():
    # pack() parses its own arguments (sockwire/py/fastcall.rs): positional or keyword, the
    # rest as header fields, and Python's TypeErrors for a missing, repeated or surplus one.
    frame = GAME.pack(b"ab", 5, flags=9)
    assert frame == HDR_GAME.pack(2, 5, 9) + b"ab"
    assert GAME.pack(body=b"ab", msg_id=5, flags=9) == frame
    assert GAME.pack(b"ab", flags=9, msg_id=5) == frame
    # A name built at run time is not interned: matched by value all the same.
    assert GAME.pack(b"ab", **{"msg_" + "id": 5, "fl" + "ags": 9}) == frame
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'body'"):
        GAME.pack()
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'body'"):
        GAME.pack(msg_id=5)
    with pytest.raises(TypeError, match=r"takes from 1 to 2 positional arguments but 3"):
        GAME.pack(b"ab", 5, 9)
    with pytest.raises(TypeError, match=r"multiple values for argument 'msg_id'"):
        GAME.pack(b"ab", 5, msg_id=5)
    with pytest.raises(TypeError, match=r"multiple values for argument 'body'"):
        GAME.pack(b"ab", body=b"ab")
    with pytest.raises(TypeError, match=r"argument 'msg_id': 'str' object cannot be interpreted"):
        GAME.pack(b"ab", msg_id="5")
    with pytest.raises(TypeError, match=r"keywords must be strings"):
        GAME.pack(b"ab", **{1: 2})
    # Unbound, through the class, with the instance checked.
    assert sw.PacketFormat.pack(GAME, b"ab", 5, flags=9) == frame
    with pytest.raises(TypeError, match="PacketFormat"):
        sw.PacketFormat.pack(object(), b"ab")
    assert "**fields" in sw.PacketFormat.pack.__text_signature__
    assert sw.PacketFormat.pack.__doc__.startswith("One frame carrying")


def test_pack_accepts_bytes_like():
    assert GAME.pack(bytearray(b"ab")) == GAME.pack(memoryview(b"ab")) == GAME.pack(b"ab")


def test_unpack_wants_exactly_one_frame():
    frame = GAME.pack(b"abc", msg_id=1)
    with pytest.raises(sw.IncompleteFrame) as info:
        GAME.unpack(frame[:-1])
    assert info.value.partial == frame[:-1]
    assert info.value.expected == len(frame)
    with pytest.raises(sw.ProtocolError, match="one frame"):
        GAME.unpack(frame + frame)


def test_repr_and_equality():
    assert repr(GAME) == (
        "PacketFormat('!IHB', ('length', 'msg_id', 'flags'), "
        "length_includes_header=False, max_body=8388608)"
    )
    assert GAME == sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))
    assert GAME != sw.PacketFormat("!IHB", ("length", "msg_id", "flags"), max_body=5)


# --- Packet ----------------------------------------------------------------------------------


def test_packet_fields_equality_and_repr():
    p = sw.Packet(b"hi", msg_id=3, flags=1, room=7)
    assert (p.body, p.msg_id, p.flags, p.header) == (b"hi", 3, 1, {"room": 7})
    assert p == sw.Packet(bytearray(b"hi"), 3, 1, room=7)
    assert p != sw.Packet(b"hi", 3, 1, room=8)
    assert p != sw.Packet(b"hi", 3, 1)
    assert hash(p) == hash(sw.Packet(b"hi", 3, 1, room=7))
    assert len(p) == 2
    assert repr(p) == "Packet(b'hi', msg_id=3, flags=1, room=7)"
    long = repr(sw.Packet(b"x" * 1000))
    assert "(1000 bytes)" in long and len(long) < 120


# --- Netty LengthFieldBasedFrameDecoder ----------------------------------------------------

# The seven examples of the LengthFieldBasedFrameDecoder javadoc: (offset, length, adjustment,
# strip, bytes before decode, bytes after decode, what pack() takes and its header fields).
NETTY_EXAMPLES = [
    (0, 2, 0, 0, b"\x00\x0c" + HELLO, b"\x00\x0c" + HELLO, HELLO, {}),
    (0, 2, 0, 2, b"\x00\x0c" + HELLO, HELLO, HELLO, {}),
    (0, 2, -2, 0, b"\x00\x0e" + HELLO, b"\x00\x0e" + HELLO, HELLO, {}),
    (
        2, 3, 0, 0,
        b"\xca\xfe\x00\x00\x0c" + HELLO,
        b"\xca\xfe\x00\x00\x0c" + HELLO,
        HELLO,
        {"prefix": b"\xca\xfe"},
    ),
    (
        0, 3, 2, 0,
        b"\x00\x00\x0c\xca\xfe" + HELLO,
        b"\x00\x00\x0c\xca\xfe" + HELLO,
        b"\xca\xfe" + HELLO,
        {},
    ),
    (1, 2, 1, 3, b"\xca\x00\x0c\xfe" + HELLO, b"\xfe" + HELLO, b"\xfe" + HELLO, {"prefix": CA}),
    (1, 2, -3, 3, b"\xca\x00\x10\xfe" + HELLO, b"\xfe" + HELLO, b"\xfe" + HELLO, {"prefix": CA}),
]  # fmt: skip


@pytest.mark.parametrize("example", NETTY_EXAMPLES, ids=[f"javadoc{i + 1}" for i in range(7)])
def test_netty_javadoc_examples(example):
    offset, length, adjustment, strip, before, after, content, fields = example
    fmt = sw.PacketFormat.length_field(offset, length, adjustment=adjustment, strip=strip)
    # decode, whole and byte by byte
    assert fmt.unpack(before).body == after
    dec = fmt.decoder()
    got = [p for i in range(len(before)) for p in dec.feed(before[i : i + 1])]
    assert [p.body for p in got] == [after]
    assert got[0].header == fields
    # encode: Netty's LengthFieldPrepender convention (what follows the length field)
    assert fmt.pack(content, **fields) == before


def test_netty_widths_and_byte_order():
    for width in (1, 2, 3, 4, 8):
        fmt = sw.PacketFormat.length_field(0, width, strip=width, byteorder="little")
        frame = fmt.pack(b"abc")
        assert frame[:width] == (3).to_bytes(width, "little")
        assert fmt.unpack(frame).body == b"abc"
    with pytest.raises(ValueError):
        sw.PacketFormat.length_field(0, 5)
    with pytest.raises(ValueError):
        sw.PacketFormat.length_field(0, 2, byteorder="middle")


def netty_too_long_stream():
    return struct.pack("!I", 32) + bytes(range(32)) + struct.pack("!I", 1) + b"a"


def test_netty_discard_too_long_frame_1():
    """LengthFieldBasedFrameDecoderTest.testDiscardTooLongFrame1"""
    dec = sw.PacketFormat.length_field(0, 4, max_frame=16).decoder()
    with pytest.raises(sw.FrameTooLarge) as info:
        dec.feed(netty_too_long_stream())
    assert info.value.packets == []
    assert info.value.length == 36 and info.value.limit == 16
    assert [p.body for p in dec.feed(b"")] == [b"\x00\x00\x00\x01a"]
    assert dec.feed(b"") == []


def test_netty_discard_too_long_frame_2():
    """LengthFieldBasedFrameDecoderTest.testDiscardTooLongFrame2"""
    dec = sw.PacketFormat.length_field(0, 4, max_frame=16).decoder()
    stream = netty_too_long_stream()
    with pytest.raises(sw.FrameTooLarge):
        dec.feed(stream[:14])
    assert [p.body for p in dec.feed(stream[14:])] == [b"\x00\x00\x00\x01a"]
    assert dec.feed(b"") == []


def test_netty_fail_fast_too_long_frame_recovery():
    """LengthFieldBasedFrameDecoderTest.testFailFastTooLongFrameRecovery"""
    dec = sw.PacketFormat.length_field(0, 4, strip=4, max_frame=5).decoder()
    for _ in range(2):
        with pytest.raises(sw.FrameTooLarge):
            dec.feed(b"\x00\x00\x00\x02")  # raised as soon as the length is read
        assert [p.body for p in dec.feed(b"\x00\x00\x00\x00\x00\x01A")] == [b"A"]


def test_netty_corrupt_lengths():
    fmt = sw.PacketFormat.length_field(0, 8, strip=8)
    with pytest.raises(sw.ProtocolError, match="negative"):
        fmt.unpack(struct.pack("!q", -1))
    fmt = sw.PacketFormat.length_field(0, 2, adjustment=-5)
    with pytest.raises(sw.ProtocolError, match="lengthFieldEndOffset"):
        fmt.unpack(b"\x00\x01x")
    fmt = sw.PacketFormat.length_field(0, 2, strip=10)
    with pytest.raises(sw.ProtocolError, match="initialBytesToStrip"):
        fmt.unpack(b"\x00\x01x")


# --- varint -----------------------------------------------------------------------------------


def py_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 100_000])
def test_varint_matches_protobuf_encoding(size):
    fmt = sw.PacketFormat.varint()
    body = bytes(size)
    frame = fmt.pack(body)
    assert frame == py_varint(size) + body
    assert fmt.unpack(frame).body == body
    assert fmt.header_size is None


def test_varint_errors():
    fmt = sw.PacketFormat.varint(max_body=10)
    with pytest.raises(sw.FrameTooLarge):
        fmt.decoder().feed(py_varint(11))
    with pytest.raises(sw.ProtocolError, match="malformed varint"):
        fmt.decoder().feed(b"\xff" * 5)
    with pytest.raises(sw.ProtocolError, match="negative length"):
        fmt.decoder().feed(b"\xff\xff\xff\xff\x0f")


# --- Decoder ----------------------------------------------------------------------------------


def test_decoder_buffers_partial_frames():
    dec = GAME.decoder()
    frame = GAME.pack(b"abcdef", msg_id=2)
    assert dec.feed(frame[:3]) == [] and dec.pending == 3
    assert dec.feed(frame[3:9]) == [] and dec.pending == 9
    assert dec.feed(frame[9:] + frame[:1]) == [sw.Packet(b"abcdef", 2)]
    assert dec.pending == 1
    assert dec.format == GAME


def test_decoder_error_keeps_earlier_and_later_packets():
    fmt = sw.PacketFormat("!I", max_body=8)
    dec = fmt.decoder()
    stream = fmt.pack(b"one") + struct.pack("!I", 100) + bytes(100) + fmt.pack(b"two")
    with pytest.raises(sw.FrameTooLarge) as info:
        dec.feed(stream)
    assert info.value.packets == [sw.Packet(b"one")]
    assert info.value.later_errors == []
    assert dec.pending == len(fmt.pack(b"two"))  # held for the next feed, counted
    assert dec.feed(b"") == [sw.Packet(b"two")]
    assert dec.pending == 0


MAGIC = sw.PacketFormat("!2sIH", ("magic", "length", "msg_id"), expect={"magic": b"\xca\xfe"})


def test_a_stream_of_bad_frames_keeps_the_decoder_bounded():
    """2000 feeds of 64 KiB of garbage: each call decodes all it is given, so at most one
    unfinished frame waits (this grew to 125 MiB when every feed kept the rest of its chunk)."""
    dec = MAGIC.decoder()
    chunk = bytes(range(256)) * 256
    errors = 0
    for _ in range(2000):
        try:
            dec.feed(chunk)
        except sw.ProtocolError:
            errors += 1
        assert dec.pending <= 8
    assert errors == 1  # one run of garbage, reported once
    assert dec.feed(b"") == []


def test_after_a_bad_magic_the_decoder_resynchronises_on_the_magic():
    good = MAGIC.pack(b"after", msg_id=2)
    stream = MAGIC.pack(b"before", msg_id=1) + b"\xde\xad\x00\x00\x00\x05garbage" + good
    for size in (1, 3, len(stream)):
        dec = MAGIC.decoder()
        got, errors = [], []
        for i in range(0, len(stream), size):
            try:
                got += dec.feed(stream[i : i + size])
            except sw.ProtocolError as exc:
                errors.append(exc)
                got += exc.packets
        got += dec.feed(b"")
        assert [p.body for p in got] == [b"before", b"after"], size
        assert len(errors) == 1 and "magic" in str(errors[0])


def test_every_bad_frame_of_one_feed_is_reported():
    """Without a magic there is no garbage run: each bad frame is its own error; the first is
    raised, the others ride along in later_errors, and the good frames are all kept."""
    fmt = sw.PacketFormat("!i", max_body=8)
    bad = struct.pack("!i", -1)
    stream = fmt.pack(b"a") + bad + fmt.pack(b"b") + bad + fmt.pack(b"c")
    dec = fmt.decoder()
    with pytest.raises(sw.ProtocolError, match="negative") as info:
        dec.feed(stream)
    assert [p.body for p in info.value.packets] == [b"a"]
    assert [type(e) for e in info.value.later_errors] == [sw.ProtocolError]
    assert [p.body for p in dec.feed(b"")] == [b"b", b"c"]


@st.composite
def stream_and_cuts(draw):
    bodies = draw(st.lists(st.binary(max_size=300), max_size=30))
    msg_ids = draw(st.lists(st.integers(0, 65535), min_size=len(bodies), max_size=len(bodies)))
    stream = b"".join(GAME.pack(b, msg_id=m) for b, m in zip(bodies, msg_ids, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    return bodies, msg_ids, stream, cuts


@settings(max_examples=300, deadline=None)
@given(stream_and_cuts(), st.booleans())
def test_any_chunking_gives_the_same_packets(case, one_byte_chunks):
    bodies, msg_ids, stream, cuts = case
    if one_byte_chunks:
        chunks = [stream[i : i + 1] for i in range(len(stream))]
    else:
        points = [0, *cuts, len(stream)]
        chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    dec = GAME.decoder()
    got = []
    for chunk in chunks:
        got += dec.feed(chunk)
        assert dec.pending <= GAME.header_size + GAME.max_body
    assert [(p.body, p.msg_id) for p in got] == list(zip(bodies, msg_ids, strict=True))
    assert dec.pending == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_garbage_raises_only_sockwire_errors(chunks):
    formats = [
        sw.PacketFormat("!IHB", ("length", "msg_id", "flags"), max_body=100),
        sw.PacketFormat("<h", length_includes_header=True, max_body=100),
        sw.PacketFormat.length_field(1, 2, adjustment=-3, strip=3, max_frame=60),
        sw.PacketFormat.varint(max_body=100),
    ]
    for fmt in formats:
        dec = fmt.decoder()
        for chunk in chunks:
            try:
                dec.feed(chunk)
            except sw.ProtocolError:
                pass
            bound = (fmt.header_size or 5) + fmt.max_body
            assert dec.pending <= bound + len(chunk)


# One exception type, TypeError (as for an unexpected keyword argument), for a header value the
# format has no field for, however it is given; never silently dropped.
PLAIN = sw.PacketFormat("!I")


@pytest.mark.parametrize(
    "call",
    [
        lambda: PLAIN.pack(b"", msg_id=3),
        lambda: PLAIN.pack(b"", flags=1),
        lambda: PLAIN.pack(b"", bogus=1),
        lambda: PLAIN.pack_many([b"a"], msg_id=3),
        lambda: PLAIN.pack_many([sw.Packet(b"a", msg_id=5)]),
        lambda: PLAIN.pack_many([sw.Packet(b"a", flags=2)]),
        lambda: PLAIN.pack_many([sw.Packet(b"a", room=2)]),
    ],
    ids=[
        "msg_id",
        "flags",
        "field",
        "many-msg_id",
        "packet-msg_id",
        "packet-flags",
        "packet-field",
    ],
)
def test_a_value_for_a_field_the_format_lacks_is_a_type_error(call):
    with pytest.raises(TypeError, match=r"this format has no '.*' field"):
        call()


def test_constants_are_checked_on_pack_too():
    fmt = sw.PacketFormat("!2sI", ("magic", "length"), expect={"magic": b"\xca\xfe"})
    assert fmt.pack(b"x", magic=b"\xca\xfe") == fmt.pack(b"x")
    with pytest.raises(ValueError, match=r"fixed to b'\\xca\\xfe' by expect=, not b'zz'"):
        fmt.pack(b"x", magic=b"zz")


def test_mismatch_messages_read_like_python():
    fmt = sw.PacketFormat("!2sI", ("magic", "length"), expect={"magic": b"\xca\xfe"})
    with pytest.raises(sw.ProtocolError) as info:
        fmt.unpack(b"\xde\xad" + bytes(4))
    assert str(info.value) == r"header field 'magic' is b'\xde\xad', expected b'\xca\xfe'"
    num = sw.PacketFormat("!HI", ("magic", "length"), expect={"magic": 0xCAFE})
    with pytest.raises(sw.ProtocolError, match="is 0xbeef, expected 0xcafe"):
        num.unpack(b"\xbe\xef" + bytes(4))


@pytest.mark.parametrize(
    "header",
    ["!18446744073709551615xI", "@18446744073709551613xQ", "!I100000000000000s", "!I99999999999I"],
)
def test_sizes_that_overflow_are_a_value_error_at_construction(header):
    with pytest.raises(ValueError, match="total struct size too long"):
        sw.PacketFormat(header)


@pytest.mark.parametrize(
    ("offset", "length", "kwargs"),
    [(2**64 - 1, 4, {}), (10**14, 4, {}), (0, 4, {"max_frame": 0}), (8, 4, {"max_frame": 4})],
)
def test_netty_parameters_that_cannot_work_are_a_value_error(offset, length, kwargs):
    with pytest.raises(ValueError):
        sw.PacketFormat.length_field(offset, length, **kwargs)


def test_java_argument_order_is_refused():
    """Java's LengthFieldBasedFrameDecoder(1024, 2, 3, 0, 0) copied positionally."""
    with pytest.raises(TypeError, match="positional"):
        sw.PacketFormat.length_field(1024, 2, 3, 0, 0)
    with pytest.raises(ValueError, match="maxFrameLength"):
        sw.PacketFormat.length_field(1024, 2, adjustment=3, strip=0, max_frame=0)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: sw.PacketFormat("!I", max_body=-1), "max_body"),
        (lambda: sw.PacketFormat.varint(-5), "max_body"),
        (lambda: sw.PacketFormat.length_field(-1, 4), "offset"),
        (lambda: sw.PacketFormat.length_field(0, 4, strip=-1), "strip"),
        (lambda: sw.PacketFormat.length_field(0, 4, max_frame=-1), "max_frame"),
        (lambda: sw.Compression("zlib", min_size=-1), "min_size"),
    ],
)
def test_range_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=f"^{name} must be >= 0"):
        call()


def test_fields_given_as_a_string_is_a_clear_type_error():
    with pytest.raises(TypeError, match="sequence of names"):
        sw.PacketFormat("!I", "length")
    with pytest.raises(TypeError, match="str names, not int"):
        sw.PacketFormat("!I", [1])


def test_reentrant_pack_from_an_index_method():
    """A field value whose __index__ packs with the same format (a PanicException before)."""
    fmt = sw.PacketFormat("!IB", ("length", "flags"))

    class Sneaky:
        def __index__(self):
            fmt.pack(b"inner", flags=1)
            return 7

    assert fmt.pack(b"outer", flags=Sneaky()) == fmt.pack(b"outer", flags=7)


def test_packets_with_the_same_header_values_are_equal_however_they_were_made():
    fmt = sw.PacketFormat("!IHH", ("length", "msg_id", "room"))
    assert fmt.unpack(fmt.pack(b"x", msg_id=1, room=5)) == sw.Packet(b"x", msg_id=1, room=5)
    assert sw.Packet(b"x", room=5) != sw.Packet(b"x", room=6)
