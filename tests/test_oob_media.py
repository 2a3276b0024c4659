"""Each out-of-band medium through its real signal path, degraded, and fed garbage."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import wave

import cv2
import numpy as np
import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from keystrap.oob.audio import SAMPLE_RATE, AudioMedium, from_wav, to_wav
from keystrap.oob.base45 import Base45Error, b45decode, b45encode
from keystrap.oob.frame import OobDecodeError, frame, unframe
from keystrap.oob.light import LightMedium, chips_for, decode_trace, sample_schedule, write_trace
from keystrap.oob.medium import decode_flight, encode_flight
from keystrap.oob.nfc import NfcMedium
from keystrap.oob.qr import PREFIX, QrMedium
from keystrap_lab.impair import QR_IMPAIRMENTS, impair_audio, impair_qr

from .conftest import load_vectors

VECTOR = load_vectors("bootstrap.json")[0]
FLIGHTS = {k: bytes.fromhex(VECTOR["flights"][k]) for k in ("1", "4", "5")}
F4 = FLIGHTS["4"]


# -- frame and Base45 -----------------------------------------------------------------


def test_frame_round_trip_and_every_truncation_and_flip() -> None:
    framed = frame(F4)
    assert len(framed) == len(F4) + 3 and unframe(framed, "t") == F4
    for n in range(len(framed)):
        with pytest.raises(OobDecodeError):
            unframe(framed[:n], "t")
    for i in range(len(framed)):
        for bit in range(8):
            damaged = bytearray(framed)
            damaged[i] ^= 1 << bit
            with pytest.raises(OobDecodeError):
                unframe(bytes(damaged), "t")


@pytest.mark.parametrize("v", load_vectors("base45.json"), ids=lambda v: v["base45"])
def test_base45_rfc9285_examples(v: dict[str, str]) -> None:
    assert b45encode(v["bytes_ascii"].encode()) == v["base45"]
    assert b45decode(v["base45"]) == v["bytes_ascii"].encode()


@pytest.mark.parametrize("bad", ["a", "GGW", "ZZZ", "A"])
def test_base45_rejects(bad: str) -> None:
    with pytest.raises(Base45Error):
        b45decode(bad)


@given(st.binary(max_size=100))
def test_base45_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


@given(st.text(max_size=60))
def test_base45_decoder_raises_only_its_error(text: str) -> None:
    with contextlib.suppress(Base45Error):
        b45decode(text)


@given(st.binary(max_size=80))
def test_unframe_raises_only_its_error(data: bytes) -> None:
    try:
        unframe(data, "t")
    except OobDecodeError as exc:
        assert exc.channel == "t"


# -- QR code -----------------------------------------------------------------------


@pytest.mark.parametrize("flight", ["1", "4", "5"])
@pytest.mark.parametrize("how", QR_IMPAIRMENTS)
def test_qr_survives_degradation(flight: str, how: str) -> None:
    medium = QrMedium()
    png = encode_flight(medium, FLIGHTS[flight])
    damaged = impair_qr(png, how, np.random.default_rng(5))
    assert decode_flight(medium, damaged) == FLIGHTS[flight]


def test_qr_png_decodes_with_zbarimg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert shutil.which("zbarimg"), "zbar-tools is installed by the Makefile"
    medium = QrMedium()
    for name, flight in FLIGHTS.items():
        path = tmp_path / f"f{name}.png"
        path.write_bytes(encode_flight(medium, flight))
        done = subprocess.run(
            ["zbarimg", "--raw", "-q", str(path)], capture_output=True, text=True, check=True
        )
        text = done.stdout.strip()
        assert text.startswith(PREFIX)
        assert unframe(b45decode(text[len(PREFIX) :]), "qr") == flight


def test_qr_is_alphanumeric_and_svg_and_terminal_render() -> None:
    medium = QrMedium()
    symbol = medium.symbol(frame(F4))
    assert symbol.mode == "alphanumeric"
    assert medium.svg(frame(F4)).startswith(b"<?xml")
    assert "\u2588" in medium.terminal(frame(F4))


def _png_of(content: str) -> bytes:
    buffer = io.BytesIO()
    segno.make_qr(content).save(buffer, kind="png", scale=6)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG garbage", "not an image"),
        (bytes(range(256)), "not an image"),
        ("white", "no readable QR code"),
        ("other", "something else"),
        ("badb45", "Base45"),
        ("badcrc", "CRC"),
    ],
)
def test_qr_bad_input(signal: bytes | str, message: str) -> None:
    if signal == "white":
        _, encoded = cv2.imencode(".png", np.full((200, 200), 255, np.uint8))
        signal = encoded.tobytes()
    elif signal == "other":
        signal = _png_of("https://example.org/not-a-flight")
    elif signal == "badb45":
        signal = _png_of(PREFIX + "a")
    elif signal == "badcrc":
        damaged = bytearray(frame(F4))
        damaged[5] ^= 1
        signal = _png_of(PREFIX + b45encode(bytes(damaged)))
    assert isinstance(signal, bytes)
    with pytest.raises(OobDecodeError, match=message) as info:
        decode_flight(QrMedium(), signal)
    assert info.value.channel == "qr"


# -- NFC ---------------------------------------------------------------------------


def test_nfc_round_trip_is_an_external_type_record() -> None:
    import ndef

    medium = NfcMedium()
    message = encode_flight(medium, F4)
    (record,) = list(ndef.message_decoder(message))
    assert record.type == "urn:nfc:ext:keystrap.org:flight"
    assert decode_flight(medium, message) == F4


def test_nfc_bad_input() -> None:
    import ndef

    medium = NfcMedium()
    uri = b"".join(ndef.message_encoder([ndef.UriRecord("https://example.org")]))
    with pytest.raises(OobDecodeError, match="no keystrap record"):
        decode_flight(medium, uri)
    twice = b"".join(
        ndef.message_encoder([ndef.Record("urn:nfc:ext:keystrap.org:flight", "", frame(F4))] * 2)
    )
    with pytest.raises(OobDecodeError, match="more than one"):
        decode_flight(medium, twice)
    for garbage in (b"", b"\xff\x00", encode_flight(medium, F4)[:-5]):
        with pytest.raises(OobDecodeError):
            decode_flight(medium, garbage)


def test_nfc_every_bit_flip_is_detected() -> None:
    """Found by bench/oob.py: a flipped bit in the record type made ndeflib raise
    UnicodeDecodeError instead of a decode error."""
    message = encode_flight(NfcMedium(), F4)
    for i in range(len(message)):
        for bit in range(8):
            damaged = bytearray(message)
            damaged[i] ^= 1 << bit
            with pytest.raises(OobDecodeError):
                decode_flight(NfcMedium(), bytes(damaged))


@given(st.binary(max_size=120))
def test_nfc_decoder_raises_only_its_error(data: bytes) -> None:
    with contextlib.suppress(OobDecodeError):
        NfcMedium().demodulate(data)


def test_nfc_without_reader_says_so() -> None:
    with pytest.raises(OobDecodeError, match="nfc"):
        NfcMedium().read_tag("usb:ffff:ffff")


# -- audio -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_samples() -> np.ndarray:
    return AudioMedium().samples(frame(F4))


def _wav(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    return to_wav(samples, rate)


@pytest.mark.parametrize(
    ("snr_db", "gain", "rate"),
    [
        (None, 1.0, 1.0),
        (10, 1.0, 1.0),
        (None, 0.05, 1.0),
        (None, 1.0, 1.002),
        (None, 1.0, 0.998),
        (10, 0.05, 1.002),
    ],
    ids=["clean", "noise 10 dB", "attenuated", "rate +0.2%", "rate -0.2%", "all"],
)
def test_audio_survives_degradation(snr_db: float | None, gain: float, rate: float) -> None:
    wav = encode_flight(AudioMedium(), F4)
    damaged = impair_audio(
        wav, np.random.default_rng(3), snr_db=snr_db, gain=gain, rate_factor=rate
    )
    assert decode_flight(AudioMedium(), damaged) == F4


def test_audio_file_at_another_sample_rate(audio_samples: np.ndarray) -> None:
    from scipy.signal import resample_poly

    at_44k = resample_poly(audio_samples.astype(np.float64), 147, 160)
    assert decode_flight(AudioMedium(), _wav(np.clip(at_44k, -1, 1), 44_100)) == F4


def test_audio_rejects_the_wav_atheris_found() -> None:
    """fuzz/fuzz_oob.py: a RIFF/WAVE header whose chunk size points past the end made
    the wave module raise a bare RuntimeError."""
    crash = bytes([0x52, 0x49, 0x46, 0x46, 0xA6, 0, 0, 0, 0x57, 0x41, 0x56, 0x45, 0, 0]) + b"b" * 17
    with pytest.raises(OobDecodeError, match="not a PCM WAV"):
        decode_flight(AudioMedium(), crash + bytes(2))


def test_audio_wav_is_16_bit_pcm(audio_samples: np.ndarray) -> None:
    wav = encode_flight(AudioMedium(), F4)
    with wave.open(io.BytesIO(wav)) as source:
        assert (source.getsampwidth(), source.getnchannels(), source.getframerate()) == (
            2,
            1,
            SAMPLE_RATE,
        )
    seconds = len(from_wav(wav, "audio")[0]) / SAMPLE_RATE
    assert seconds < 3.0


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("silence", "no data-over-sound"),
        ("noise", "no data-over-sound"),
        ("truncated", "no data-over-sound"),
        ("not wav", "not a PCM WAV"),
        ("empty", "empty"),
        ("8-bit", "16-bit"),
    ],
)
def test_audio_bad_input(audio_samples: np.ndarray, how: str, message: str) -> None:
    rng = np.random.default_rng(1)
    if how == "silence":
        signal = _wav(np.zeros(SAMPLE_RATE * 2))
    elif how == "noise":
        signal = _wav(rng.normal(0, 0.3, SAMPLE_RATE * 3).clip(-1, 1))
    elif how == "truncated":
        signal = _wav(audio_samples[: len(audio_samples) // 2])
    elif how == "not wav":
        signal = b"RIFF" + bytes(100)
    elif how == "empty":
        signal = b""
    else:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(1)
            out.setframerate(8000)
            out.writeframes(bytes(800))
        signal = buffer.getvalue()
    with pytest.raises(OobDecodeError, match=message) as info:
        decode_flight(AudioMedium(), signal)
    assert info.value.channel == "audio"


# -- light -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_light_survives_noise_jitter_and_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    medium = LightMedium()
    drift = [-0.03, -0.02, 0.02, 0.03][seed % 4]
    chips = chips_for(frame(F4))
    trace = sample_schedule(
        chips,
        medium.profile.chip_rate,
        medium.profile.sample_rate,
        drift=drift,
        jitter=0.1,
        noise=0.2,
        low=0.3,
        high=0.6,
        rng=rng,
    )
    captured = write_trace(trace, medium.profile.sample_rate)
    assert decode_flight(medium, captured) == F4


def test_light_schedule_is_manchester_with_preamble() -> None:
    schedule = LightMedium().modulate(frame(F4)).decode()
    chips = schedule.splitlines()[1]
    assert chips.startswith("0" * 8 + "10" * 16)
    body = chips[8:-8]
    assert all(body[i : i + 2] in ("10", "01") for i in range(0, len(body), 2))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("constant", "constant light"),
        ("random", "preamble|delimiter|Manchester|ends|CRC|length"),
        ("truncated", "ends before|too short|CRC|length"),
        ("empty", "too short"),
        ("binary", "not text"),
        ("no rate", "sample_rate"),
    ],
)
def test_light_bad_input(how: str, message: str) -> None:
    medium = LightMedium()
    rate = medium.profile.sample_rate
    rng = np.random.default_rng(2)
    if how == "constant":
        signal = write_trace(np.full(20_000, 0.7), rate)
    elif how == "random":
        signal = write_trace(rng.random(20_000), rate)
    elif how == "truncated":
        full = sample_schedule(chips_for(frame(F4)), medium.profile.chip_rate, rate)
        signal = write_trace(full[: len(full) * 2 // 3], rate)
    elif how == "empty":
        signal = write_trace(np.zeros(0), rate)
    elif how == "binary":
        signal = bytes(range(256))
    else:
        signal = b"0.1\n0.2\n"
    with pytest.raises(OobDecodeError, match=message) as info:
        decode_flight(medium, signal)
    assert info.value.channel == "light"


@settings(max_examples=60)
@given(st.lists(st.floats(0, 1), min_size=0, max_size=3000))
def test_light_decoder_raises_only_its_error(values: list[float]) -> None:
    with contextlib.suppress(OobDecodeError):
        decode_trace(np.asarray(values), 4000, 500, "light")


@settings(max_examples=40)
@given(st.binary(max_size=200))
def test_every_medium_rejects_random_bytes_with_its_error(data: bytes) -> None:
    for medium in (QrMedium(), NfcMedium(), LightMedium(), AudioMedium()):
        try:
            decode_flight(medium, data)
        except OobDecodeError as exc:
            assert exc.channel == medium.name


# -- signals that would take the decoder's memory or time -----------------------------


def test_a_wav_whose_sample_rate_is_absurd_is_refused() -> None:
    for rate in (1, 7, 4_294_967_295):
        signal = bytearray(_wav(np.zeros(4800)))
        signal[24:28] = rate.to_bytes(4, "little")  # the fmt chunk's sample rate
        with pytest.raises(OobDecodeError, match="sample rate") as info:
            decode_flight(AudioMedium(), bytes(signal))
        assert info.value.channel == "audio"


@pytest.mark.parametrize("rate", ["0", ".", "0.00001", "1e308"])
def test_a_light_schedule_with_a_bad_chip_rate_is_refused(rate: str) -> None:
    schedule = f"# keystrap light schedule: chip_rate={rate}\n0101\n".encode()
    with pytest.raises(OobDecodeError) as info:
        decode_flight(LightMedium(), schedule)
    assert info.value.channel == "light"


def test_an_image_claiming_too_many_pixels_is_refused() -> None:
    signal = b"P5\n100000 100000\n255\n" + bytes(64)
    with pytest.raises(OobDecodeError, match="not an image") as info:
        decode_flight(QrMedium(), signal)
    assert info.value.channel == "qr"


def test_a_sound_card_without_its_library_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails, as when absent
    with pytest.raises(OobDecodeError, match="sounddevice is not installed"):
        AudioMedium().record(1.0)
    with pytest.raises(OobDecodeError, match="sounddevice is not installed"):
        AudioMedium().play(frame(F4))
