"""Independent DTLS-PSK peers: libcoap's coap-client (OpenSSL build) and
``openssl s_client``. Nothing here uses aiocoap or tinydtls: the tests and the
demo use these to show that a node's CoAPS interoperates with another stack.

libcoap 4.3.1 takes ``-k`` as the raw bytes of a command-line argument, and its
``-h`` hint file is read as text, so a PSK containing a zero byte cannot reach
it at all (about 6 % of random 16-byte keys). For such a key the GET goes
through ``openssl s_client -psk HEX`` instead, with the CoAP request encoded
by hand below, so the check still runs on an independent stack.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

COAP_CLIENT = "coap-client-openssl"


class ToolMissing(Exception):
    """The independent client is not installed."""


class KeyNotExpressible(Exception):
    """The key holds a zero byte, which no command-line argument can carry."""


def coap_client_get(host: str, port: int, identity: str, key: bytes, path: str) -> str:
    """``coap-client -u ID -k KEY coaps://host:port/path``: its output ("" = no data)."""
    if b"\x00" in key:
        raise KeyNotExpressible("libcoap 4.3.1 cannot take a key with a zero byte")
    exe = shutil.which(COAP_CLIENT)
    if exe is None:
        raise ToolMissing(f"{COAP_CLIENT} not found: `make setup` installs libcoap3-bin")
    with tempfile.TemporaryDirectory() as tmp:
        received = Path(tmp) / "body"
        subprocess.run(  # noqa: S603 - fixed tool, argument list
            [
                exe.encode(),
                b"-B",
                b"4",
                b"-o",
                bytes(received),
                b"-u",
                identity.encode(),
                b"-k",
                key,  # the key's bytes, as they are
                f"coaps://{host}:{port}/{path}".encode(),
            ],
            capture_output=True,
            timeout=20,
            check=False,
        )
        return received.read_text(errors="replace").strip() if received.exists() else ""


def coap_get_request(path: str, message_id: int = 0x4B53) -> bytes:
    """A confirmable CoAP GET (RFC 7252 section 3) with a 2-byte token and one Uri-Path."""
    segment = path.encode()
    if len(segment) > 12:
        raise ValueError("one short Uri-Path segment only")
    header = bytes([0x42, 0x01]) + message_id.to_bytes(2, "big") + b"\x4b\x53"
    return header + bytes([(11 << 4) | len(segment)]) + segment


def openssl_get(host: str, port: int, identity: str, key: bytes, path: str) -> str:
    """The same GET over ``openssl s_client -dtls1_2 -psk HEX`` ("" = no data)."""
    exe = shutil.which("openssl")
    if exe is None:
        raise ToolMissing("openssl not found: `make setup` installs it")
    process = subprocess.Popen(  # noqa: S603 - fixed tool, argument list
        [
            exe,
            "s_client",
            "-dtls1_2",
            "-quiet",
            "-cipher",
            "PSK-AES128-CCM8",
            "-psk_identity",
            identity,
            "-psk",
            key.hex(),
            "-connect",
            f"{host}:{port}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(coap_get_request(path))
    process.stdin.flush()
    output = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and b"\xff" not in output:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            break
        output += chunk
    process.kill()
    process.communicate()
    if len(output) < 4 or output[1] != 0x45:  # 2.05 Content
        return ""
    _, _, payload = output.partition(b"\xff")
    return payload.decode("utf-8", "replace")


def independent_get(host: str, port: int, identity: str, key: bytes, path: str = "config") -> str:
    """coap-client where the key allows it, else openssl: the body, or "" if no data."""
    try:
        return coap_client_get(host, port, identity, key, path)
    except KeyNotExpressible:
        return openssl_get(host, port, identity, key, path)
