"""The telegram framer: what real serial lines throw at it, one situation per test."""

from __future__ import annotations

import random

import pytest

from p1lora.common.crc16 import crc16_arc, crc16_arc_bytewise
from p1lora.common.framing import (
    PROBLEM_CRC,
    PROBLEM_NON_ASCII,
    CrcCheck,
    FramerStats,
    TelegramFramer,
    check_crc,
)

from .helpers_telegrams import build_telegram, feed_chunks, fixture, telegram_part

V5 = fixture("V5.txt")
V4 = fixture("V4_2.txt")
DSMR22 = fixture("DSMR22_ISKRA_MT382_REAL.txt")


def frame(*chunks: bytes, include_bad: bool = False, max_bytes: int = 8192):
    framer = TelegramFramer(max_bytes)
    return feed_chunks(framer, chunks, include_bad=include_bad), framer.stats


def test_one_telegram_in_one_chunk():
    framed, stats = frame(V5)
    assert [t.raw for t in framed] == [V5]
    assert framed[0].crc == CrcCheck("6EEE", "6EEE", True)
    assert framed[0].ok
    assert stats == FramerStats(telegrams_ok=1)


def test_byte_by_byte():
    framer = TelegramFramer()
    out = []
    for index in range(len(V5)):
        out.extend(framer.feed(V5[index : index + 1]))
        if index < len(V5) - 1:
            assert out == []
    assert [t.raw for t in out] == [V5]
    assert framer.buffered_bytes == 0


def test_telegram_is_delivered_as_soon_as_its_line_end_arrives():
    framer = TelegramFramer()
    assert framer.feed(V5[:-1]) == []
    assert [t.raw for t in framer.feed(V5[-1:])] == [V5]


def test_junk_before_the_first_header_is_skipped_and_counted():
    junk = b"\x00\xff\xfe7\r\n(00.123*kW)\r\n!1A2B\r\n"
    framed, stats = frame(junk + V5 + V4)
    assert [t.raw for t in framed] == [V5, V4]
    assert stats.telegrams_ok == 2
    assert stats.bytes_discarded == len(junk)
    assert stats.framing_errors == 0


def test_noise_right_before_the_header_still_counts_as_a_line_start():
    framed, _ = frame(b"\x00\x8f\xff" + V5)
    assert [t.raw for t in framed] == [V5]


def test_slash_inside_a_line_is_not_a_header():
    # Joining a stream in the middle of a line that happens to contain '/'.
    junk = b"1-0:99.1.0(ab/cd)\r\n0-0:96.13.0(x/y)\r\n!1234\r\n"
    framed, stats = frame(junk + V5)
    assert [t.raw for t in framed] == [V5]
    assert stats.bytes_discarded == len(junk)
    assert stats.framing_errors == 0


def test_printable_junk_glued_to_the_first_header():
    framed, stats = frame(b"junk" + V5)
    assert [t.raw for t in framed] == [V5]
    assert stats.bytes_discarded == 4
    framed, _ = frame(b"x/" + b"junk" + V5)
    assert [t.raw for t in framed] == [V5]


def test_header_like_text_mid_line_must_still_pass_its_crc():
    # "/ABC1" inside a line looks like a header; with a CRC line that does not match it is
    # reported as a failed telegram, never delivered.
    junk = b"0-0:96.13.0(/ABC1 not a telegram)\r\n!1234\r\n"
    framed, stats = frame(junk + V5)
    assert [t.raw for t in framed] == [V5]
    assert stats.crc_errors == 1


def test_slash_inside_a_telegram_value_does_not_restart_it():
    telegram = build_telegram(
        "ISK5\\2M550T-1012", ["0-0:96.13.0(see/there)", "1-0:1.8.1(1.000*kWh)"]
    )
    framed, stats = frame(telegram)
    assert [t.raw for t in framed] == [telegram]
    assert stats.framing_errors == 0


def test_cut_off_telegram_then_a_new_header():
    cut = V4[: len(V4) // 2]
    # Cut at a line end, so the next header is at a line start.
    cut = cut[: cut.rfind(b"\r\n") + 2]
    framed, stats = frame(cut + V5)
    assert [t.raw for t in framed] == [V5]
    assert stats.cut_off == 1
    assert stats.framing_errors == 1
    assert stats.bytes_discarded == len(cut)


def test_cut_off_mid_line_is_rescued_by_the_embedded_telegrams_crc():
    cut = V4[:300]  # ends in the middle of a line; V5's header follows without a line end
    framed, stats = frame(cut + V5)
    assert [t.raw for t in framed] == [V5]
    assert stats.cut_off == 1
    assert stats.crc_errors == 0
    assert stats.bytes_discarded == len(cut)


def test_cut_off_mid_line_without_crc_keeps_the_second_telegram():
    cut = DSMR22[:200]
    framed, stats = frame(cut + DSMR22)
    assert [t.raw for t in framed] == [DSMR22]
    assert stats.cut_off == 1


def test_crc_failure_is_counted_and_only_returned_on_request():
    bad = V5.replace(b"000004.426", b"000004.427")
    framed, stats = frame(bad + V4)
    assert [t.raw for t in framed] == [V4]
    assert stats.crc_errors == 1
    assert stats.telegrams_ok == 1
    framed, _ = frame(bad + V4, include_bad=True)
    assert [t.raw for t in framed] == [bad, V4]
    failed = framed[0]
    assert failed.problem == PROBLEM_CRC
    assert not failed.ok
    assert failed.crc.expected == "6EEE"
    assert failed.crc.valid is False
    assert failed.crc.computed == f"{crc16_arc(bad[: bad.rindex(b'!') + 1]):04X}"


def test_bit_error_in_the_crc_digits_fails():
    bad = V5.replace(b"!6EEE", b"!6EEF")
    framed, stats = frame(bad)
    assert framed == []
    assert stats.crc_errors == 1


@pytest.mark.parametrize("digits", ["lower", "unpadded"])
def test_crc_digits_in_either_case_and_without_padding(digits):
    lines = ["1-0:1.8.1(000001.234*kWh)"]
    # Find a telegram whose CRC has a leading zero so that unpadded differs from padded.
    for n in range(2000):
        telegram = build_telegram(
            f"ISK5\\2M550T-{n}", lines, lowercase=digits == "lower", unpadded=digits == "unpadded"
        )
        check = check_crc(telegram)
        assert check is not None
        if digits == "lower" or len(check.expected or "") < 4:
            break
    framed, stats = frame(telegram)
    assert len(framed) == 1
    assert framed[0].crc.valid is True
    assert framed[0].crc.expected == (check.expected or "").upper()
    assert stats.crc_errors == 0


def test_unpadded_fixture():
    framed, _ = frame(fixture("UNPADDED_CRC.txt"))
    assert framed[0].crc == CrcCheck("B9F", "0B9F", True)


def test_telegram_without_crc():
    framed, stats = frame(DSMR22)
    assert [t.raw for t in framed] == [DSMR22]
    assert framed[0].crc.expected is None
    assert framed[0].crc.valid is None
    assert stats.telegrams_ok == 1


def test_non_ascii_bytes_fail_the_crc_of_a_telegram_that_has_one():
    bad = V5.replace(b"230.0*V", b"23\xb0.0*V")
    framed, stats = frame(bad)
    assert framed == []
    assert stats.crc_errors == 1


def test_non_ascii_bytes_in_a_telegram_without_crc_are_rejected():
    bad = DSMR22.replace(b"16719.940", b"1671\x99.940")
    framed, stats = frame(bad + DSMR22, include_bad=True)
    assert [t.problem for t in framed] == [PROBLEM_NON_ASCII, None]
    assert stats.non_ascii == 1
    assert stats.framing_errors == 1
    assert stats.telegrams_ok == 1


def test_non_ascii_text_is_fine_when_the_crc_vouches_for_it():
    telegram = build_telegram("ISK5\\2M550T-1012", ["0-0:96.13.0(Störung)"])
    framed, _ = frame(telegram)
    assert [t.raw for t in framed] == [telegram]


def test_blank_lines_after_the_header():
    telegram = build_telegram("KFM5KAIFA-METER", ["1-0:1.8.1(000001.234*kWh)"], blank_lines=3)
    framed, _ = frame(telegram)
    assert [t.raw for t in framed] == [telegram]


def test_runaway_input_is_bounded_and_the_framer_recovers():
    framer = TelegramFramer(max_telegram_bytes=2048)
    framer.feed(b"/ISK5\\2MT382-1000\r\n")
    for _ in range(100):
        framer.feed(b"1-0:1.8.1(000001.234*kWh)\r\n" * 10)
        assert framer.buffered_bytes <= 2048
    assert framer.stats.oversize >= 1
    assert [t.raw for t in framer.feed(V5)] == [V5]


def test_telegram_larger_than_the_limit_is_dropped():
    framed, stats = frame(V5, max_bytes=512)
    assert framed == []
    assert stats.oversize == 1


def test_bang_that_is_not_an_end_line():
    # A bit error turned the first character of a line into '!'.
    bad = V5.replace(b"\r\n1-0:1.8.2", b"\r\n!-0:1.8.2")
    framed, stats = frame(bad + V4)
    assert [t.raw for t in framed] == [V4]
    assert stats.bad_end == 1


def test_cr_not_followed_by_lf_after_the_crc():
    bad = V5[:-1] + b"x\r\n"
    framed, stats = frame(bad + V4)
    assert [t.raw for t in framed] == [V4]
    assert stats.bad_end == 1


def test_five_hex_digits_is_not_a_crc_line():
    bad = V5.replace(b"!6EEE\r\n", b"!6EEE0\r\n")
    framed, stats = frame(bad)
    assert framed == []
    assert stats.bad_end == 1


def test_end_of_input_without_the_final_line_end():
    framer = TelegramFramer()
    assert framer.feed(V5[:-2]) == []
    assert [t.raw for t in framer.flush()] == [V5[:-2]]
    assert framer.flush() == []


def test_end_of_input_inside_a_telegram_counts_as_cut_off():
    framer = TelegramFramer()
    framer.feed(V5[:100])
    assert framer.flush() == []
    assert framer.stats.cut_off == 1
    assert framer.buffered_bytes == 0


def test_lf_only_telegram_is_framed_but_fails_its_crc():
    lf_only = V5.replace(b"\r\n", b"\n")
    framed, stats = frame(lf_only, include_bad=True)
    assert len(framed) == 1
    assert framed[0].raw == lf_only
    assert framed[0].problem == PROBLEM_CRC
    assert stats.crc_errors == 1


def test_trailing_bytes_after_the_telegram_are_junk():
    framed, stats = frame(fixture("ESY5Q3DA1004_V304.txt"))
    assert [t.raw for t in framed] == [telegram_part("ESY5Q3DA1004_V304.txt")]
    assert stats.bytes_discarded == len(fixture("ESY5Q3DA1004_V304.txt")) - len(framed[0].raw)


def test_reset_forgets_a_partial_telegram():
    framer = TelegramFramer()
    framer.feed(V5[:200])
    framer.reset()
    assert framer.buffered_bytes == 0
    assert framer.stats.bytes_discarded == 200
    assert [t.raw for t in framer.feed(V5)] == [V5]


def test_empty_chunks_are_harmless():
    framer = TelegramFramer()
    assert framer.feed(b"") == []
    assert framer.flush() == []


def test_stats_as_dict():
    _, stats = frame(b"junk" + V5)
    assert stats.as_dict()["bytes_discarded"] == 4
    assert stats.as_dict()["telegrams_ok"] == 1


def test_max_telegram_bytes_must_be_sane():
    with pytest.raises(ValueError, match="at least 16"):
        TelegramFramer(max_telegram_bytes=3)


def test_word_table_crc_matches_the_bytewise_implementation():
    rng = random.Random(7)
    for length in [*range(0, 40), 899, 900, 1501]:
        data = bytes(rng.randrange(256) for _ in range(length))
        assert crc16_arc(data) == crc16_arc_bytewise(data)
        assert crc16_arc(bytearray(data)) == crc16_arc_bytewise(data)
        assert crc16_arc(memoryview(data)) == crc16_arc_bytewise(data)


def test_check_crc_of_things_that_are_not_telegrams():
    assert check_crc(b"no header here!1234\r\n") is None
    assert check_crc(b"/ISK5 header but no end\r\n") is None
    assert check_crc(b"junk" + V5) == CrcCheck("6EEE", "6EEE", True)
