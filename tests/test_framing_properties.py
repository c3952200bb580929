"""Property tests for the framer (hypothesis).

* Any chunking of a stream yields the same telegrams and the same counters.
* Random junk and random corruption never raise, and never yield a telegram whose CRC is
  wrong: with up to three flipped bits per telegram, CRC-16/ARC catches every error
  (it detects all 1-, 2- and 3-bit errors in messages this short), so every telegram that
  comes out must be one that went in.
* The framer's memory stays bounded whatever arrives.

Examples are derandomised so the suite is deterministic, and kept small so it runs in seconds.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p1lora.common.crc16 import crc16_arc
from p1lora.common.framing import FramedTelegram, TelegramFramer

from .helpers_telegrams import CRC_FIXTURES, FIXTURES, feed_chunks, split_at, telegram_part

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TELEGRAMS = [telegram_part(name) for name in FIXTURES]
CRC_TELEGRAMS = [telegram_part(name) for name in CRC_FIXTURES]

# Junk as it appears between telegrams: noise, partial lines, stray end markers.
junk = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"", b"\r\n", b"123*kWh)\r\n", b"!\r\n", b"\x00\xff", b"(a/b)", b"!12", b"/", b"\n/"]
    ),
)


@st.composite
def streams(draw: st.DrawFn, pool: list[bytes]) -> tuple[bytes, list[bytes]]:
    """A stream of telegrams from `pool` with junk (ending in a line break) in between."""
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    parts: list[bytes] = []
    for telegram in chosen:
        parts.append(draw(junk) + b"\r\n")
        parts.append(telegram)
    return b"".join(parts), chosen


def assert_every_byte_accounted_for(framer: TelegramFramer, stream: bytes, delivered: int) -> None:
    """Each input byte was either delivered in a good telegram or counted as discarded."""
    assert framer.buffered_bytes == 0
    assert delivered + framer.stats.bytes_discarded == len(stream)


def checks_out(framed: FramedTelegram) -> bool:
    """The telegram's CRC line matches its content (by the reference CRC implementation)."""
    raw = framed.raw
    bang = raw.rindex(b"\n!") + 1
    digits = raw[bang + 1 :].rstrip(b"\r\n")
    if not digits:
        return framed.crc.expected is None
    return int(digits, 16) == crc16_arc(raw[: bang + 1])


@PROPERTY_SETTINGS
@given(data=streams(TELEGRAMS), cuts=st.lists(st.integers(0, 6000), max_size=30))
def test_any_chunking_yields_the_same_telegrams(data, cuts):
    stream, chosen = data
    whole = TelegramFramer()
    expected = feed_chunks(whole, [stream])
    chunked = TelegramFramer()
    got = feed_chunks(chunked, split_at(stream, cuts))
    assert [t.raw for t in got] == [t.raw for t in expected]
    assert chunked.stats == whole.stats
    assert [t.raw for t in got] == chosen
    assert_every_byte_accounted_for(chunked, stream, sum(len(t.raw) for t in got))


@PROPERTY_SETTINGS
@given(noise=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=10))
def test_random_junk_never_raises_and_yields_only_consistent_telegrams(noise, cuts):
    framer = TelegramFramer(max_telegram_bytes=1024)
    delivered = 0
    for framed in feed_chunks(framer, split_at(noise, cuts), include_bad=True):
        if framed.ok:
            assert checks_out(framed)
            delivered += len(framed.raw)
        else:
            assert framed.crc.valid is not True
    assert_every_byte_accounted_for(framer, noise, delivered)


@PROPERTY_SETTINGS
@given(
    data=streams(TELEGRAMS),
    noise=st.lists(st.tuples(st.integers(0, 6000), st.binary(min_size=1, max_size=20)), max_size=5),
    cuts=st.lists(st.integers(0, 6000), max_size=10),
)
def test_junk_spliced_into_a_stream_never_raises(data, noise, cuts):
    stream, _ = data
    for position, blob in sorted(noise, reverse=True):
        stream = stream[:position] + blob + stream[position:]
    framer = TelegramFramer()
    delivered = 0
    for framed in feed_chunks(framer, split_at(stream, cuts), include_bad=True):
        assert framed.ok == (framed.problem is None)
        if framed.ok:
            assert checks_out(framed)
            delivered += len(framed.raw)
    assert_every_byte_accounted_for(framer, stream, delivered)


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """CRC telegrams, each with 0-3 bits flipped somewhere in its bytes."""
    chosen = draw(st.lists(st.sampled_from(CRC_TELEGRAMS), min_size=1, max_size=4))
    parts = []
    for telegram in chosen:
        data = bytearray(telegram)
        for _ in range(draw(st.integers(0, 3))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
        parts.append(b"\r\n" + bytes(data))
    return b"".join(parts), chosen


def _body(raw: bytes) -> bytes:
    """`/` through `!` and the CRC digits: what the CRC vouches for (not the line end)."""
    bang = raw.rindex(b"\n!") + 1
    return raw[: bang + 1] + raw[bang + 1 :].rstrip(b"\r\n")


@PROPERTY_SETTINGS
@given(data=corrupted(), cuts=st.lists(st.integers(0, 6000), max_size=10))
def test_corruption_never_yields_a_telegram_that_was_not_sent(data, cuts):
    stream, chosen = data
    sent = {_body(telegram) for telegram in chosen}
    framer = TelegramFramer()
    got = feed_chunks(framer, split_at(stream, cuts))
    for framed in got:
        assert framed.crc.valid is True
        assert _body(framed.raw) in sent
    assert_every_byte_accounted_for(framer, stream, sum(len(t.raw) for t in got))


@PROPERTY_SETTINGS
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(max_size=200).filter(lambda b: b"!" not in b),
            st.just(b"\r\n/ISK5\\2MT382-1000\r\n"),
            st.just(b"1-0:1.8.1(000001.234*kWh)\r\n" * 8),
        ),
        max_size=60,
    ),
    limit=st.integers(64, 2048),
)
def test_memory_stays_bounded_without_end_markers(pieces, limit):
    framer = TelegramFramer(max_telegram_bytes=limit)
    for piece in pieces:
        assert framer.feed(piece) == []
        assert framer.buffered_bytes <= limit
    assert framer.flush() == []
    assert framer.buffered_bytes == 0


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=2000))
def test_word_table_crc_equals_bytewise_crc(data):
    from p1lora.common.crc16 import crc16_arc_bytewise

    assert crc16_arc(data) == crc16_arc_bytewise(data)
    # Continuing a running CRC over a split gives the same as one pass.
    half = len(data) // 3
    assert crc16_arc(data[half:], crc16_arc(data[:half])) == crc16_arc(data)
