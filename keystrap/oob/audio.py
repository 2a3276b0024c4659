"""Audio: a data-over-sound modem (ggwave, "Fastest" audible protocol) writing and
reading 16-bit PCM WAV at 48 kHz, and playing/recording through sounddevice when
a sound device exists.

Why ggwave rather than our own FSK: it brings Reed-Solomon forward error
correction and a tested preamble detector, and its Fastest mode carries a
48-byte flight 4 frame in about 2.2 s (flight 1 in about 1.5 s); an FSK modem
of equal robustness at 10 dB SNR would need a lower symbol rate. The measured
seconds on air per flight are in bench/oob.py.
"""

from __future__ import annotations

import io
import struct
import wave
from typing import Any

import numpy as np

from keystrap.extras import DEVICES, pip_install
from keystrap.oob.frame import OobDecodeError

SAMPLE_RATE = 48_000
PROTOCOL_FASTEST = 2
LEAD_SECONDS = 0.2


class AudioMedium:
    name = "audio"
    suffix = ".wav"

    def __init__(self, protocol: int = PROTOCOL_FASTEST, volume: int = 50) -> None:
        self.protocol = protocol
        self.volume = volume

    def samples(self, frame: bytes) -> np.ndarray:
        """The modem's float samples in [-1, 1], with a little silence around them."""
        import ggwave

        ggwave.disableLog()
        tone = np.frombuffer(
            ggwave.encode(frame, protocolId=self.protocol, volume=self.volume), dtype=np.float32
        )
        lead = np.zeros(int(SAMPLE_RATE * LEAD_SECONDS), dtype=np.float32)
        return np.concatenate([lead, tone, lead])

    def modulate(self, frame: bytes) -> bytes:
        return to_wav(self.samples(frame), SAMPLE_RATE)

    def capture(self, emitted: bytes) -> bytes:
        return emitted

    def demodulate(self, captured: bytes) -> bytes:
        samples, rate = from_wav(captured, self.name)
        if rate != SAMPLE_RATE:
            from scipy.signal import resample_poly

            divisor = np.gcd(rate, SAMPLE_RATE)
            samples = resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor)
        return self.decode_samples(samples.astype(np.float32))

    def decode_samples(self, samples: np.ndarray) -> bytes:
        import ggwave

        ggwave.disableLog()
        instance = ggwave.init()
        try:
            data = samples.astype(np.float32).tobytes()
            chunk = 4096
            for start in range(0, len(data), chunk):
                found = ggwave.decode(instance, data[start : start + chunk])
                if found is not None:
                    return bytes(found)
            # Flush: a transmission that ends right at the end of the recording.
            for _ in range(40):
                found = ggwave.decode(instance, bytes(chunk))
                if found is not None:
                    return bytes(found)
        finally:
            ggwave.free(instance)
        seconds = len(samples) / SAMPLE_RATE
        raise OobDecodeError(
            self.name, f"no data-over-sound transmission found in {seconds:.1f} s of audio"
        )

    def play(self, frame: bytes) -> None:
        _sounddevice(self.name).play(self.samples(frame), SAMPLE_RATE, blocking=True)

    def record(self, seconds: float) -> bytes:
        recording = _sounddevice(self.name).rec(
            int(seconds * SAMPLE_RATE), SAMPLE_RATE, channels=1, dtype="float32", blocking=True
        )
        return self.decode_samples(recording[:, 0])


def to_wav(samples: np.ndarray, rate: int) -> bytes:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _sounddevice(channel: str) -> Any:
    """The sound card's library, optional (``keystrap[devices]``): only for a real
    loudspeaker or microphone."""
    try:
        import sounddevice
    except ImportError:
        raise OobDecodeError(
            channel, f"sounddevice is not installed: {pip_install(DEVICES)}"
        ) from None
    return sounddevice


MIN_RATE, MAX_RATE = 8_000, 192_000
"""Sample rates a recording may have (it is resampled to the modem's): what sound
cards record. Outside them, resampling would take minutes or gigabytes."""


def from_wav(data: bytes, channel: str) -> tuple[np.ndarray, int]:
    """Mono float samples and the sample rate of a 16-bit PCM WAV file."""
    if not data:
        raise OobDecodeError(channel, "empty audio file")
    try:
        with wave.open(io.BytesIO(data), "rb") as source:
            width, channels, rate = (
                source.getsampwidth(),
                source.getnchannels(),
                source.getframerate(),
            )
            raw = source.readframes(source.getnframes())
    except (wave.Error, EOFError, RuntimeError, ValueError, struct.error) as exc:
        # The wave module lets some malformations escape as RuntimeError (a chunk
        # that claims to reach past the end; found by fuzz/fuzz_oob.py).
        raise OobDecodeError(channel, f"not a PCM WAV file: {exc!r}") from None
    if width != 2:
        raise OobDecodeError(channel, f"expected 16-bit samples, got {8 * width}-bit")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise OobDecodeError(
            channel, f"a sample rate of {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
        )
    samples = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32) / 32768
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
    if len(samples) == 0:
        raise OobDecodeError(channel, "the audio file holds no samples")
    return samples, rate
