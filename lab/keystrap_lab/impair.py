"""Impairments a real capture suffers, applied to our signals (tests, benchmarks,
attack harness): a QR code photographed askew, audio through a noisy room and a
sound card with a slightly different clock, light through a noisy sensor."""

from __future__ import annotations

import numpy as np

from keystrap.oob.audio import SAMPLE_RATE, from_wav, to_wav
from keystrap.oob.light import (
    LightMedium,
    chips_for,
    decode_trace,
    read_trace,
    sample_schedule,
    write_trace,
)

QR_IMPAIRMENTS = (
    "half size",
    "double size",
    "rotate 15",
    "rotate 45",
    "rotate 90",
    "blur",
    "noise",
    "all",
)


def impair_qr(png: bytes, how: str, rng: np.random.Generator) -> bytes:
    import cv2

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("not an image")
    pad = image.shape[0] // 3  # a camera sees the code with some of its surroundings
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
    h, w = image.shape
    if how == "half size":
        image = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    elif how == "double size":
        image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    elif how.startswith("rotate"):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(how.split()[1]), 1.0)
        image = cv2.warpAffine(image, matrix, (w, h), borderValue=255)
    elif how == "blur":
        image = cv2.GaussianBlur(image, (5, 5), 1.5)
    elif how == "noise":
        image = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    elif how == "all":
        image = cv2.warpAffine(
            image, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 0.8), (w, h), borderValue=255
        )
        image = cv2.GaussianBlur(image, (3, 3), 1.0)
        image = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown QR impairment {how!r}")
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return bytes(encoded.tobytes())


def impair_audio(
    wav: bytes,
    rng: np.random.Generator,
    *,
    snr_db: float | None = None,
    gain: float = 1.0,
    rate_factor: float = 1.0,
) -> bytes:
    """White noise at ``snr_db`` (relative to the signal's power), attenuation by
    ``gain``, and a receiver clock off by ``rate_factor`` (1.002 = 0.2 % fast)."""
    from scipy.signal import resample

    samples, rate = from_wav(wav, "audio")
    x = samples.astype(np.float64)
    if snr_db is not None:
        power = np.mean(x[np.abs(x) > 1e-4] ** 2)
        x = x + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))
    x = x * gain
    if rate_factor != 1.0:
        x = resample(x, int(len(x) * rate_factor))
    return to_wav(np.clip(x, -1, 1), rate or SAMPLE_RATE)


def impair_light(trace_file: bytes, rng: np.random.Generator) -> bytes:
    """Re-sample the schedule behind an ideal capture with noise (20 % of the swing),
    edge jitter (10 % of a chip) and a sender clock 3 % off."""
    medium = LightMedium()
    trace, rate = read_trace(trace_file, "light")
    frame = decode_trace(trace, rate, medium.profile.chip_rate, "light")
    degraded = sample_schedule(
        chips_for(frame),
        medium.profile.chip_rate,
        rate,
        drift=0.03,
        jitter=0.1,
        noise=0.2,
        low=0.3,
        high=0.6,
        rng=rng,
    )
    return write_trace(degraded, rate)
