"""The lossless telegram codec: exact rebuilds, sizes on realistic streams, and every refusal."""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import zlib

import pytest

from p1lora.common import codec
from p1lora.common.codec import (
    MAX_TELEGRAM_BYTES,
    CodecError,
    PayloadKind,
    decode_update,
    encode_update,
    is_key_update,
    payload_kind,
    reference_id,
    telegram_id,
)
from p1lora.common.codec_dictionary import P1_DICTIONARY
from p1lora.common.crc16 import crc16_arc
from p1lora.tools import bench_codec

from .conftest import TELEGRAMS, telegram_bytes
from .helpers_codec import (
    FixtureStream,
    fixture_stream,
    recrc,
    run_lossy_link,
    with_text_message,
)

FIXTURES = sorted(path.name for path in TELEGRAMS.glob("*.txt"))
#: The CRC each fixture prints (tests/data/telegrams/README.md); None: the fixture has none.
PRINTED_CRC = {
    "DSMR22_ISKRA_MT382_REAL.txt": None,
    "ESY5Q3DA1004_V304.txt": None,
    "FLUVIUS_V171.txt": 0x3AD7,
    "FLUVIUS_V171_ALT.txt": 0xC4B0,
    "SAGEMCOM_T210_D_R.txt": 0x7EF9,
    "UNPADDED_CRC.txt": 0x0B9F,
    "V2_2.txt": None,
    "V3.txt": None,
    "V4_2.txt": 0x6796,
    "V5.txt": 0x6EEE,
    "V5_EON_HU.txt": 0x99DA,
    "V5_TWO_MBUS.txt": 0x56DD,
}
DSMR5_FIXTURES = ("V5.txt", "V5_TWO_MBUS.txt", "V4_2.txt")


def holding(*telegrams: bytes):
    """A receiver lookup that holds exactly these telegrams."""
    store = {telegram_id(t): t for t in telegrams}
    return store.get


def nothing_held(ref_id: int) -> bytes | None:
    raise AssertionError(f"a key update must not look up a reference (asked for {ref_id:04X})")


def roundtrip(telegram: bytes, reference: bytes | None) -> bytes:
    payload = encode_update(telegram, reference)
    lookup = nothing_held if reference is None else holding(reference)
    assert decode_update(payload, lookup) == telegram
    return payload


def test_fixture_list_matches_the_readme():
    assert set(FIXTURES) == set(PRINTED_CRC)


# --- identity -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_telegram_id_is_the_printed_crc_or_the_crc_of_everything(name):
    telegram = telegram_bytes(name)
    expected = PRINTED_CRC[name]
    if expected is None:
        expected = crc16_arc(telegram)
    assert telegram_id(telegram) == expected


def test_telegram_id_of_a_telegram_with_a_wrong_crc_is_the_crc_of_all_its_bytes():
    telegram = telegram_bytes("V5.txt").replace(b"!6EEE", b"!6EEF")
    assert telegram_id(telegram) == crc16_arc(telegram)


def test_telegram_id_accepts_a_lower_case_crc():
    telegram = telegram_bytes("V5.txt").replace(b"!6EEE", b"!6eee")
    assert telegram_id(telegram) == 0x6EEE


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_round_trips_as_a_key(name):
    telegram = telegram_bytes(name)
    payload = roundtrip(telegram, None)
    assert is_key_update(payload)
    assert reference_id(payload) is None
    # Keys must really compress: a quarter of the telegram or less for everything but the tiny
    # ones (the 212-byte heat meter, the 306-byte EasyMeter), which carry a long serial number.
    assert len(payload) <= 0.42 * len(telegram)
    if len(telegram) > 400:
        assert len(payload) <= 0.30 * len(telegram)


@pytest.mark.parametrize("name", DSMR5_FIXTURES)
def test_dsmr_4_and_5_keys_fit_one_radio_frame(name):
    # 255-byte LoRa payload minus the frame header, counter and tag.
    assert len(encode_update(telegram_bytes(name), None)) <= 255 - 15


def test_no_crc_telegrams_carry_an_added_check():
    telegram = telegram_bytes("V3.txt")
    payload = encode_update(telegram, None)
    assert payload[0] & 0x01
    assert int.from_bytes(payload[1:3], "big") == crc16_arc(telegram)


def test_the_preset_dictionary_is_pinned():
    # The dictionary is wire format: editing it needs a new payload kind, not a silent change.
    assert (len(P1_DICTIONARY), crc16_arc(P1_DICTIONARY)) == (3961, 0x0683)


def test_key_for_incompressible_bytes_is_stored():
    telegram = random.Random(7).randbytes(600)
    payload = roundtrip(telegram, None)
    assert payload_kind(payload) is PayloadKind.KEY_STORED
    assert len(payload) == len(telegram) + 4  # kind, added check, tag


def test_empty_telegram_round_trips():
    roundtrip(b"", None)
    roundtrip(b"", telegram_bytes("V5.txt"))


# --- deltas -------------------------------------------------------------------------------


def test_delta_wire_format_of_one_quiet_second():
    reference = telegram_bytes("V5.txt")
    telegram = recrc(reference.replace(b"(170102192002W)", b"(170102192003W)"))
    payload = roundtrip(telegram, reference)
    # kind DELTA_FIELDS without flags, reference id, the new meter CRC, tag, empty bitmap: the
    # clock moved by exactly its predicted second, so nothing else is needed.
    assert payload == (
        bytes([0x30])
        + (0x6EEE).to_bytes(2, "big")
        + telegram_id(telegram).to_bytes(2, "big")
        + bytes([zlib.crc32(telegram) & 0xFF, 0x00])
    )
    assert reference_id(payload) == 0x6EEE
    assert not is_key_update(payload)


@pytest.mark.parametrize("name", FIXTURES)
def test_evolving_fixture_streams_round_trip_as_field_deltas(name):
    stream = fixture_stream(name, 120, seed=3)
    sizes = []
    for reference, telegram in itertools.pairwise(stream):
        payload = roundtrip(telegram, reference)
        assert payload_kind(payload) is PayloadKind.DELTA_FIELDS
        sizes.append(len(payload))
    assert statistics.median(sizes) <= 24


@pytest.mark.parametrize("reference_name", FIXTURES)
@pytest.mark.parametrize("name", FIXTURES)
def test_any_fixture_round_trips_against_any_other(name, reference_name):
    roundtrip(telegram_bytes(name), telegram_bytes(reference_name))


def test_a_text_message_appearing_costs_a_deflate_delta_not_a_key():
    reference = telegram_bytes("V5.txt")
    telegram = with_text_message(reference, "Storing: onderhoud 12-03")
    payload = roundtrip(telegram, reference)
    assert payload_kind(payload) is PayloadKind.DELTA_DEFLATE
    # The message itself is 48 hex digits; the rest of the telegram is a few back-references.
    assert len(payload) < 80
    assert len(payload) < len(encode_update(telegram, None)) / 2
    # ... and it going away again as well.
    payload = roundtrip(reference, telegram)
    assert len(payload) < 30


def test_a_growing_power_failure_log_round_trips():
    reference = telegram_bytes("V5.txt")
    telegram = recrc(
        reference.replace(
            b"1-0:99.97.0(0)(0-0:96.7.19)",
            b"1-0:99.97.0(1)(0-0:96.7.19)(170102180000W)(0000000240*s)",
        )
    )
    assert len(roundtrip(telegram, reference)) < 50


def test_ten_second_meters_get_the_clock_step_for_free():
    stream = fixture_stream("V4_2.txt", 20, seed=1, seconds=10)
    for reference, telegram in itertools.pairwise(stream):
        payload = roundtrip(telegram, reference)
        assert payload_kind(payload) is PayloadKind.DELTA_FIELDS
        assert payload[0] & 0x08  # STEP_10S


def test_an_older_reference_costs_only_a_few_bytes_more():
    stream = fixture_stream("V5_TWO_MBUS.txt", 12, seed=2)
    assert len(roundtrip(stream[11], stream[0])) <= 30


def test_summer_to_winter_time_round_trips():
    reference = telegram_bytes("V5_TWO_MBUS.txt").replace(b"(200426223325S)", b"(201025025959S)")
    reference = recrc(reference)
    telegram = recrc(reference.replace(b"(201025025959S)", b"(201025020000W)"))
    payload = roundtrip(telegram, reference)
    assert payload_kind(payload) is PayloadKind.DELTA_FIELDS


def test_lower_case_and_unpadded_crcs_round_trip_as_field_deltas():
    lower = recrc(telegram_bytes("V5.txt").replace(b"!6EEE", b"!6eee"))
    stream = FixtureStream(lower, seed=4).take(40)
    assert all(t[-6:-2] == t[-6:-2].lower() for t in stream)
    for reference, telegram in itertools.pairwise(stream):
        assert payload_kind(roundtrip(telegram, reference)) is PayloadKind.DELTA_FIELDS
    unpadded = fixture_stream("UNPADDED_CRC.txt", 200, seed=5)
    widths = {len(t.rpartition(b"!")[2]) - 2 for t in unpadded}
    assert len(widths) > 1  # the CRC's printed width really varies along the stream
    for reference, telegram in itertools.pairwise(unpadded):
        assert payload_kind(roundtrip(telegram, reference)) is PayloadKind.DELTA_FIELDS


def test_a_telegram_with_a_wrong_crc_still_round_trips_byte_exact():
    reference = telegram_bytes("V5.txt")
    broken = reference.replace(b"(00.244*kW)", b"(00.245*kW)")  # CRC left as printed
    roundtrip(broken, reference)
    roundtrip(reference, broken)
    roundtrip(broken, None)


def test_encoding_is_deterministic_and_independent_of_caches():
    stream = fixture_stream("V5.txt", 5, seed=9)
    first = [encode_update(t, r) for r, t in itertools.pairwise(stream)]
    codec._analyse.cache_clear()
    again = [encode_update(t, r) for r, t in itertools.pairwise(stream)]
    assert first == again
    assert encode_update(stream[0], None) == encode_update(bytes(stream[0]), None)


def test_an_oversized_telegram_is_refused_and_an_oversized_reference_ignored():
    with pytest.raises(CodecError, match="exceeds"):
        encode_update(b"/" + b"x" * MAX_TELEGRAM_BYTES, None)
    telegram = telegram_bytes("V5.txt")
    assert is_key_update(encode_update(telegram, b"/" + b"x" * MAX_TELEGRAM_BYTES))


# --- realistic streams from the virtual meter --------------------------------------------


@pytest.fixture(scope="module")
def dsmr5_hour() -> list[bytes]:
    virtual_meter = pytest.importorskip("p1lora.transmitter.virtual_meter")
    meter = virtual_meter.VirtualMeter("dsmr5", seed=11)
    return [meter.next_telegram()[1] for _ in range(3600)]


def test_a_dsmr5_hour_meets_the_size_target(dsmr5_hour):
    sizes = []
    for reference, telegram in itertools.pairwise(dsmr5_hour):
        sizes.append(len(roundtrip(telegram, reference)))
    sizes.sort()
    assert statistics.median(sizes) <= 24  # the on-air frame (+15 B) stays within 40 B
    assert sizes[int(0.95 * len(sizes))] <= 24
    assert sizes[-1] <= 60


@pytest.mark.parametrize("profile", ["fluvius", "dsmr4", "dsmr22"])
def test_other_virtual_meter_profiles_round_trip_small(profile):
    virtual_meter = pytest.importorskip("p1lora.transmitter.virtual_meter")
    meter = virtual_meter.VirtualMeter(profile, seed=5)
    stream = [meter.next_telegram()[1] for _ in range(600)]
    sizes = [len(roundtrip(t, r)) for r, t in itertools.pairwise(stream)]
    assert statistics.median(sizes) <= 24
    roundtrip(stream[-1], None)


def test_random_frame_and_ack_loss_never_delivers_a_wrong_telegram(dsmr5_hour):
    result = run_lossy_link(dsmr5_hour, random.Random(1), frame_loss=0.2, ack_loss=0.3)
    assert result.wrong == 0
    # Everything that was not lost on the air arrives; only an evicted reference costs a key.
    assert result.delivered >= 0.75 * len(dsmr5_hour)
    assert result.key_requests < 0.02 * len(dsmr5_hour)
    assert statistics.median(result.payload_sizes) <= 24


@pytest.mark.parametrize("seed", range(4))
def test_heavy_loss_on_fixture_streams_never_delivers_a_wrong_telegram(seed):
    rng = random.Random(seed)
    for name in ("V5_EON_HU.txt", "V3.txt", "FLUVIUS_V171.txt"):
        stream = fixture_stream(name, 300, seed=seed)
        result = run_lossy_link(stream, rng, frame_loss=0.4, ack_loss=0.6, keep=3)
        assert result.wrong == 0
        assert result.delivered > 0


# --- refusals -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def delta_and_key() -> tuple[bytes, bytes, bytes, bytes]:
    reference, telegram = fixture_stream("V5_TWO_MBUS.txt", 2, seed=1)
    return reference, telegram, encode_update(telegram, reference), encode_update(telegram, None)


@pytest.mark.parametrize("first", [0x00, 0x60, 0x7F, 0xF0, 0x12, 0x1E, 0x22, 0x42, 0x52])
def test_unknown_kinds_and_flags_are_refused(first, delta_and_key):
    reference, _, delta, _ = delta_and_key
    payload = bytes([first]) + delta[1:]
    assert payload_kind(payload) is None
    assert not is_key_update(payload)
    assert reference_id(payload) is None
    with pytest.raises(CodecError):
        decode_update(payload, holding(reference))


def test_empty_payload_is_refused():
    with pytest.raises(CodecError, match="empty"):
        decode_update(b"", nothing_held)
    assert payload_kind(b"") is None


def test_unknown_reference_is_refused(delta_and_key):
    _, _, delta, _ = delta_and_key
    with pytest.raises(CodecError, match="not held"):
        decode_update(delta, lambda ref_id: None)


def test_a_different_reference_is_refused(delta_and_key):
    _, _, delta, _ = delta_and_key
    other = telegram_bytes("V5.txt")
    with pytest.raises(CodecError, match="different id"):
        decode_update(delta, lambda ref_id: other)


def test_a_held_reference_with_the_same_id_but_other_bytes_is_caught_by_the_tag():
    # CRC-16/ARC starts from zero, so a leading NUL does not change it: the receiver holds a
    # "reference" with the right id and a different text. The CRC of the rebuilt telegram
    # cannot see the difference; the tag (CRC-32) must.
    stream = fixture_stream("V3.txt", 2, seed=8)
    impostor = b"\x00" + stream[0]
    assert telegram_id(impostor) == telegram_id(stream[0])
    payload = encode_update(stream[1], stream[0])
    assert payload_kind(payload) is PayloadKind.DELTA_FIELDS
    with pytest.raises(CodecError, match="tag"):
        decode_update(payload, lambda ref_id: impostor)


def test_every_truncation_is_refused(delta_and_key):
    reference, _, delta, key = delta_and_key
    for payload in (delta, key):
        for size in range(len(payload)):
            with pytest.raises(CodecError):
                decode_update(payload[:size], holding(reference))


def test_trailing_bytes_are_refused(delta_and_key):
    reference, _, delta, key = delta_and_key
    for payload in (delta, key):
        with pytest.raises(CodecError):
            decode_update(payload + b"\x00", holding(reference))


def test_every_bit_flip_is_refused_or_harmless(delta_and_key):
    reference, telegram, delta, key = delta_and_key
    assert payload_kind(key) is PayloadKind.KEY_FIELDS
    for payload in (delta, key):
        for index in range(len(payload)):
            for bit in range(8):
                corrupted = bytearray(payload)
                corrupted[index] ^= 1 << bit
                try:
                    rebuilt = decode_update(bytes(corrupted), holding(reference))
                except CodecError:
                    continue
                # Deflate ignores the padding bits of its last byte: that flip is harmless.
                assert rebuilt == telegram


def _forged(kind: int, body: bytes, *, ref_id: int | None = None, check: int | None = None):
    out = bytes([kind])
    if ref_id is not None:
        out += ref_id.to_bytes(2, "big")
    if check is not None:
        out += check.to_bytes(2, "big")
    return out + b"\x00" + body  # tag byte


def _raw_deflate(data: bytes, zdict: bytes = P1_DICTIONARY) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    return compressor.compress(data) + compressor.flush()


def test_a_deflate_bomb_is_stopped_at_the_output_cap():
    bomb = _raw_deflate(b"0" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(CodecError, match="beyond"):
        decode_update(_forged(0x10, bomb), nothing_held)
    with pytest.raises(CodecError, match="beyond"):
        decode_update(_forged(0x50, bomb), nothing_held)
    reference = telegram_bytes("V5.txt")
    with pytest.raises(CodecError, match="beyond"):
        decode_update(_forged(0x40, bomb, ref_id=0x6EEE), holding(reference))


def test_an_oversized_stored_key_is_refused():
    with pytest.raises(CodecError, match="exceeds"):
        decode_update(_forged(0x20, b"/" + b"x" * MAX_TELEGRAM_BYTES), nothing_held)


def test_forged_field_deltas_are_refused():
    reference = telegram_bytes("V5.txt")
    lookup = holding(reference)

    def fields(bitmap: bytes, deltas: bytes, flags: int = 0) -> bytes:
        return _forged(0x30 | flags, bitmap + deltas, ref_id=0x6EEE, check=0x1234)

    cases = {
        "names fields": fields(b"\xff\xff\xff\xff\x7f", b""),  # more bits than fields
        "truncated": fields(b"\x02", b""),  # a changed field without its delta
        "over-long": fields(b"\x82\x00", b"\x02"),  # non-canonical bitmap
        "out of range": fields(b"\x02", b"\xfe\xff\xff\xff\x0f"),  # power goes negative
        "longer than": fields(b"\x02", b"\xff" * 11),  # runaway varint
        "unexpected bytes": fields(b"\x00", b"\x05"),  # a delta without a bit
        "meter CRC": fields(b"\x02", b"\x02"),  # valid shape, wrong check
        "check mode": fields(b"\x00", b"", flags=0x01),  # reference has a meter CRC
    }
    for message, payload in cases.items():
        with pytest.raises(CodecError, match=message):
            decode_update(payload, lookup)


def test_forged_clock_flag_on_a_clockless_reference_is_refused():
    reference = telegram_bytes("V3.txt")
    payload = _forged(0x39, b"\x00", ref_id=telegram_id(reference), check=0)
    with pytest.raises(CodecError, match="clock"):
        decode_update(payload, holding(reference))


def test_forged_key_skeleton_with_values_is_refused():
    payload = _forged(0x50, _raw_deflate(b"/X\r\n\r\n1-0:1.7.0(00.123*kW)\r\n!\r\n") + b"\x00")
    with pytest.raises(CodecError, match="skeleton"):
        decode_update(payload, nothing_held)


def test_lookup_errors_are_the_callers():
    reference, telegram = fixture_stream("V5.txt", 2, seed=1)
    payload = encode_update(telegram, reference)

    def broken_store(ref_id: int) -> bytes | None:
        raise KeyError(ref_id)

    with pytest.raises(KeyError):
        decode_update(payload, broken_store)


def test_each_check_is_enforced_on_its_own():
    def stored(telegram: bytes, *, check: int | None, tag: int | None = None) -> bytes:
        tag = zlib.crc32(telegram) & 0xFF if tag is None else tag
        if check is None:
            return bytes([0x20, tag]) + telegram
        return bytes([0x21]) + check.to_bytes(2, "big") + bytes([tag]) + telegram

    plain = telegram_bytes("V3.txt")  # no meter CRC: the added check proves it
    assert decode_update(stored(plain, check=crc16_arc(plain)), nothing_held) == plain
    with pytest.raises(CodecError, match="end-to-end"):
        decode_update(stored(plain, check=crc16_arc(plain) ^ 1), nothing_held)
    with pytest.raises(CodecError, match="tag"):
        decode_update(
            stored(plain, check=crc16_arc(plain), tag=(zlib.crc32(plain) & 0xFF) ^ 1), nothing_held
        )
    with pytest.raises(CodecError, match="meter CRC"):
        decode_update(stored(plain, check=None), nothing_held)

    meter = telegram_bytes("V5.txt")  # the meter CRC proves it
    assert decode_update(stored(meter, check=None), nothing_held) == meter
    with pytest.raises(CodecError, match="end-to-end"):
        decode_update(stored(meter, check=0x6EEE), nothing_held)
    broken = meter.replace(b"!6EEE", b"!6EEF")
    with pytest.raises(CodecError, match="meter CRC"):
        decode_update(stored(broken, check=None), nothing_held)


# --- the benchmark command ----------------------------------------------------------------


def _bench(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    bench_codec.configure(parser)
    return bench_codec.run(parser.parse_args(list(argv)))


def test_bench_codec_prints_a_table_per_profile(capsys):
    pytest.importorskip("p1lora.transmitter.virtual_meter")
    assert _bench("--profile", "dsmr5", "--profile", "dsmr22", "--duration", "120") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["source", "n", "telegram"]
    assert [line.split()[0] for line in lines[1:]] == ["dsmr5", "dsmr22"]


def test_bench_codec_reads_capture_files_and_prints_json(tmp_path, capsys):
    capture = tmp_path / "capture.txt"
    capture.write_bytes(b"junk\r\n" + b"".join(fixture_stream("V5.txt", 30, seed=1)))
    assert _bench("--capture", str(capture), "--ack-loss", "0.5", "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert row["source"] == "capture.txt"
    assert row["telegrams"] == 30
    assert row["wrong"] == 0
    assert row["update_bytes_median"] <= 24


@pytest.mark.parametrize(
    "argv",
    [
        ["--profile", "nosuchmeter"],
        ["--duration", "0"],
        ["--ack-loss", "1"],
        ["--overhead", "-1"],
        ["--capture", "/nonexistent/capture.txt"],
        ["--start", "yesterday"],
        ["--start", "2024-01-15T06:30:00"],
    ],
)
def test_bench_codec_rejects_bad_input_with_exit_code_2(argv, caplog):
    pytest.importorskip("p1lora.transmitter.meter_profiles")
    assert _bench(*argv) == 2
    assert caplog.records and caplog.records[-1].levelname == "ERROR"


def test_bench_codec_rejects_a_capture_with_fewer_than_two_telegrams(tmp_path, caplog):
    capture = tmp_path / "one.txt"
    capture.write_bytes(telegram_bytes("V5.txt"))
    assert _bench("--capture", str(capture)) == 2
    assert "at least two telegrams" in caplog.text
