"""``keystrap oob decode`` fails in one line on stderr, whatever the C libraries
under the media would say, and a device flag's value is checked before any
device is touched (OpenCV crashed the process on a negative camera index)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest


def decode(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "keystrap.cli.main", "oob", "decode", *args],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr.decode().splitlines()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_png_libpng_refuses_is_one_line(tmp_path: Path) -> None:
    """Well framed, every CRC right, but the image data is no zlib stream: libpng
    printed ``libpng error: IDAT: incorrect header check`` itself."""
    header = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"not zlib")
    image = tmp_path / "damaged.png"
    image.write_bytes(png + _chunk(b"IEND", b""))
    status, lines = decode("--channel", "qr", str(image))
    assert status == 2
    assert lines == ["keystrap oob: error: qr: not an image OpenCV can read"]


def test_a_missing_camera_is_one_line() -> None:
    status, lines = decode("--channel", "qr", "--camera", "63")
    assert status == 2
    assert lines == ["keystrap oob: error: qr: no camera at index 63"]


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--camera", "-1", "a camera index must be 0 to"),
        ("--camera", "-5", "a camera index must be 0 to"),
        ("--camera", str(2**40), "a camera index must be 0 to"),
        ("--record", "nan", "a recording must be above 0"),
        ("--record", "-3", "a recording must be above 0"),
        ("--record", "1e9", "a recording must be above 0"),
    ],
)
def test_a_device_flag_out_of_range_is_refused_before_any_device(
    flag: str, value: str, says: str
) -> None:
    channel = "qr" if flag == "--camera" else "audio"
    status, lines = decode("--channel", channel, flag, value)
    assert status == 2  # not -11: OpenCV segfaulted on -1 and -5
    assert len(lines) == 1 and says in lines[0], lines


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "-2e12"])
def test_a_trace_level_beyond_any_sensor_is_named(tmp_path: Path, value: str) -> None:
    """NumPy warned on stderr (overflow, invalid value) before the decoder's error."""
    levels = [value if i % 32 < 16 else "0.5" for i in range(20_000)]
    trace = tmp_path / "trace.csv"
    trace.write_text("# keystrap luminance trace: sample_rate=8000\n" + "\n".join(levels) + "\n")
    status, lines = decode("--channel", "light", str(trace))
    assert status == 2
    assert len(lines) == 1 and "line 2 of the trace is not a level within" in lines[0], lines
