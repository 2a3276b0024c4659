"""DTLS benchmark: what securing CoAP with the new PSK costs, on loopback.

A real node agent (``keystrap node FILE --serve PORT``, tinydtls through aiocoap)
serves its settings; a client with the node's PSK (aiocoap's tinydtls client)
connects through a counting UDP relay, once per trial with a fresh DTLS session:

- handshake: the first GET minus a GET on the established session (time), and
  the bytes of every DTLS handshake, ChangeCipherSpec and alert record (size);
- GET /config and POST /config round trips on the established session.

    python bench/dtls.py [--trials 30]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from keystrap.coap.node_client import NodeClient
from keystrap_lab.processes import free_udp_port
from keystrap_lab.relay import UdpRelay
from keystrap_lab.site import Site

HANDSHAKE_TYPES = {20, 22}  # ChangeCipherSpec, Handshake
ALERT = 21  # close_notify when the client ends its session
APPLICATION_DATA = 23
UPDATE = b'{"application":{"report_interval":60},"network":{"gateway":"fd00::1"}}'


def dtls_records(datagram: bytes) -> list[tuple[int, int]]:
    """``(content type, record size incl. its 13-byte header)`` of each DTLS record."""
    records = []
    offset = 0
    while offset + 13 <= len(datagram):
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        records.append((datagram[offset], 13 + length))
        offset += 13 + length
    return records


def split_traffic(datagrams: list[tuple[str, bytes]]) -> dict[str, int]:
    out = {"hs_up": 0, "hs_down": 0, "hs_datagrams": 0, "app_up": 0, "app_down": 0, "alert": 0}
    for direction, datagram in datagrams:
        records = dtls_records(datagram)
        if any(kind in HANDSHAKE_TYPES for kind, _ in records):
            out["hs_datagrams"] += 1
        for kind, size in records:
            if kind in HANDSHAKE_TYPES:
                out["hs_" + direction] += size
            elif kind == APPLICATION_DATA:
                out["app_" + direction] += size
            elif kind == ALERT:
                out["alert"] += size
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(trials: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="keystrap-dtls-") as tmp:
        root = Path(tmp)
        node_id, psk = bytes.fromhex("02000000000000d1"), secrets.token_bytes(16)
        port = free_udp_port()
        node = await Site(root).start_keyed_node(node_id, psk, port)
        relay = await UdpRelay.start("127.0.0.1", free_udp_port(), ("127.0.0.1", port))
        rows: list[dict[str, float]] = []
        try:
            for _ in range(trials):
                relay.record.datagrams.clear()
                client = await NodeClient.connect(node_id, psk, *relay.address)
                t0 = time.perf_counter()
                await client.read_config()
                t1 = time.perf_counter()
                await client.read_config()
                t2 = time.perf_counter()
                await client.update_config(UPDATE)
                t3 = time.perf_counter()
                await client.close()
                await asyncio.sleep(0.05)
                traffic = split_traffic(relay.record.datagrams)
                get_ms = (t2 - t1) * 1000
                rows.append(
                    {
                        "first_get_ms": (t1 - t0) * 1000,
                        "handshake_ms": (t1 - t0) * 1000 - get_ms,
                        "get_ms": get_ms,
                        "post_ms": (t3 - t2) * 1000,
                        **traffic,
                    }
                )
        finally:
            relay.close()
            node.stop()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {
        "trials": trials,
        "cipher_suite": "TLS_PSK_WITH_AES_128_CCM_8",
        "handshake_ms_median": round(med("handshake_ms"), 2),
        "handshake_ms_p95": round(pct([r["handshake_ms"] for r in rows], 0.95), 2),
        "first_get_ms_median": round(med("first_get_ms"), 2),
        "get_ms_median": round(med("get_ms"), 2),
        "post_config_ms_median": round(med("post_ms"), 2),
        "post_config_ms_p95": round(pct([r["post_ms"] for r in rows], 0.95), 2),
        "handshake_bytes_up": int(med("hs_up")),
        "handshake_bytes_down": int(med("hs_down")),
        "handshake_datagrams": int(med("hs_datagrams")),
        "app_bytes_up": int(med("app_up")),
        "app_bytes_down": int(med("app_down")),
        "close_alert_bytes": int(med("alert")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    result = asyncio.run(run(args.trials))
    r = result
    print(f"DTLS 1.2, {r['cipher_suite']}, loopback, {r['trials']} trials")
    print(f"  {'measure':<44} {'median':>9} {'p95':>9}")
    print(
        f"  {'handshake (first GET minus a GET)':<44} {r['handshake_ms_median']:>7} ms "
        f"{r['handshake_ms_p95']:>6} ms"
    )
    print(f"  {'GET /config on the session':<44} {r['get_ms_median']:>7} ms")
    print(
        f"  {'POST /config (validate, persist, answer)':<44} {r['post_config_ms_median']:>7} ms "
        f"{r['post_config_ms_p95']:>6} ms"
    )
    print(
        f"  handshake: {r['handshake_bytes_up']} B up, {r['handshake_bytes_down']} B down, "
        f"{r['handshake_datagrams']} datagrams (DTLS records incl. headers, no UDP/IP)"
    )
    print(
        f"  application data for GET+GET+POST: {r['app_bytes_up']} B up, "
        f"{r['app_bytes_down']} B down"
    )
    print(json.dumps({"bench": "dtls", **result}))


if __name__ == "__main__":
    main()
