"""``keystrap console --certfile --keyfile`` speaks HTTPS, and its session cookie
is then Secure."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keystrap_lab.processes import free_udp_port, keystrap_command, start_service

PASSWORD = "a long enough password"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def test_console_over_tls(tmp_path: Path) -> None:
    store = ["--database", str(tmp_path / "sbs.sqlite"), "--master-key", str(tmp_path / "m.key")]
    made = keystrap_command("admin", *store, "controller", "add", "02:00:00:00:00:00:00:c0")
    subprocess.run([*made, "--key-out", str(tmp_path / "sk.key")], check=True)
    user = keystrap_command("admin", *store, "user", "add", "alice")
    subprocess.run(user, input=PASSWORD + "\n", text=True, check=True)
    cert, key = self_signed(tmp_path)
    port = free_udp_port()
    tls = ["--certfile", str(cert), "--keyfile", str(key), "--port", str(port)]
    console = start_service("console", ["console", *store, *tls], tmp_path, tmp_path / "c.log")
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
                connection.request("GET", "/login")
                break
            except (ConnectionError, OSError):
                assert console.process.poll() is None, console.log_text()
                assert time.monotonic() < deadline, "console did not answer"
                time.sleep(0.1)
        assert connection.getresponse().status == 200
        body = urllib.parse.urlencode({"user": "alice", "password": PASSWORD})
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        connection.request(
            "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        answer = connection.getresponse()
        assert answer.status == 303
        cookie = answer.getheader("set-cookie", "").lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    finally:
        console.stop()


def test_a_fifo_as_certfile_or_keyfile_is_one_error_line(tmp_path: Path) -> None:
    """OpenSSL opens a FIFO and waits for a writer: the console hung before it
    ever listened. Each file must be a regular one."""
    store = ["--database", str(tmp_path / "sbs.sqlite"), "--master-key", str(tmp_path / "m.key")]
    made = keystrap_command("admin", *store, "controller", "add", "02:00:00:00:00:00:00:c0")
    subprocess.run([*made, "--key-out", str(tmp_path / "sk.key")], check=True)
    cert, key = self_signed(tmp_path)
    fifo = tmp_path / "pipe.pem"
    os.mkfifo(fifo)
    for certfile, keyfile in ((fifo, key), (cert, fifo)):
        tls = ["--certfile", str(certfile), "--keyfile", str(keyfile)]
        console = keystrap_command("console", *store, *tls, "--port", str(free_udp_port()))
        done = subprocess.run(console, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == (
            f"keystrap console: error: --certfile {certfile} / --keyfile {keyfile} cannot be "
            f"used: file {fifo} is a FIFO, not a regular file\n"
        )
