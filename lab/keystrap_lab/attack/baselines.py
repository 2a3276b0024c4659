"""The paper's baselines, modelled in process and put through the same attacks.

* Kang, Oh, Yoon, "Secure initial-key reconfiguration for resource constrained
  devices", IETF draft, 2014 (the paper's [6], section 2): the same exchange, but
  flight 4 -- E_IK(RN_i || RN_c) -- goes over the node's radio, not out of band.
* Jennings, "Transitive Trust Enrollment for Constrained Devices", IETF draft,
  2012 (the paper's [8], Figure 1): the device's secret is printed, unencrypted, in
  a QR code on the device or its box; an introducer scans it and hands it to the
  controller, and the device keeps using that secret.
"""

from __future__ import annotations

import secrets

from keystrap.crypto import InvalidTag, ccm_open, ccm_seal, derive_session_key
from keystrap.protocol import (
    InMemoryRepository,
    Status,
    derive_psk,
)
from keystrap.wire import Flight4, FlightType, peek_type
from keystrap_lab.attack.report import FALLS, HOLDS, Row
from keystrap_lab.simulation import Simulation, one_bootstrap

KANG_2014 = "Kang 2014 draft (flight 4 in band)"
JENNINGS = "Jennings QR enrolment"


def _run_bootstrap() -> tuple[Simulation[InMemoryRepository], bytes, bytes, bytes]:
    ik_n, sk_cs = secrets.token_bytes(16), secrets.token_bytes(16)
    node_id, controller_id = b"\x02" + secrets.token_bytes(7), b"\x02" + secrets.token_bytes(7)
    sim = one_bootstrap(controller_id, sk_cs, node_id, ik_n, secrets.token_bytes)
    sim.start(node_id)
    sim.run()
    return sim, ik_n, node_id, controller_id


def kang_2014_rows() -> list[Row]:
    sim, ik_n, node_id, controller_id = _run_bootstrap()
    node = sim.node_states[node_id]
    # In the 2014 draft flight 4 crosses the radio: the installer standing nearby hears it.
    radio = [
        m.data for _, m, _ in sim.trace.deliveries if peek_type(m.data) is FlightType.F4_CHALLENGE
    ]
    challenge = Flight4.open(radio[0], ik_n, controller_id=controller_id, node_id=node_id)
    rn_i, rn_c = challenge.rn_i, challenge.rn_c
    psk = derive_psk(ik_n, rn_i, rn_c)
    stolen_session = derive_session_key(psk, node_id, controller_id)
    leaked = psk == node.key and stolen_session == node.session_key
    replay = next(
        m.data for _, m, _ in sim.trace.deliveries if peek_type(m.data) is FlightType.F2_REQUEST
    )
    refused = sim.server.handle(replay, sim.now).status is not Status.OK
    return [
        Row(
            KANG_2014,
            "installer with IK_N records the radio during the bootstrap",
            "derives PSK_i and SK_i (the paper's section 2 criticism)",
            "derived PSK_i and SK_i" if leaked else "derived nothing",
            FALLS if leaked else HOLDS,
        ),
        Row(
            KANG_2014,
            "replay flight 2 within the window (TID already used)",
            "refused (flights 2 and 3 are as in keystrap)",
            "refused" if refused else "ACCEPTED",
            HOLDS if refused else FALLS,
        ),
    ]


def jennings_rows() -> list[Row]:
    device_secret = secrets.token_bytes(16)
    qr_on_the_box = {"otp": secrets.token_hex(4), "secret": device_secret.hex()}
    # Later traffic between controller and device is protected with that secret.
    nonce = secrets.token_bytes(13)
    config = ccm_seal(device_secret, nonce, b"gateway=fd00::1", b"")
    # The installer unpacked and mounted the device: it has seen the QR code.
    seen_by_installer = bytes.fromhex(qr_on_the_box["secret"])
    installer_reads = _opens(seen_by_installer, nonce, config)
    # An eavesdropper who never saw the box has only the ciphertext.
    outsider_reads = _opens(secrets.token_bytes(16), nonce, config)
    return [
        Row(
            JENNINGS,
            "installer who saw the QR code reads later traffic",
            "reads it: the secret is printed unencrypted and never replaced",
            "read the configuration" if installer_reads else "could not read",
            FALLS if installer_reads else HOLDS,
        ),
        Row(
            JENNINGS,
            "eavesdropper who never saw the box reads later traffic",
            "cannot",
            "read it" if outsider_reads else "could not read",
            FALLS if outsider_reads else HOLDS,
        ),
    ]


def _opens(key: bytes, nonce: bytes, sealed: bytes) -> bool:
    try:
        ccm_open(key, nonce, sealed, b"")
    except InvalidTag:
        return False
    return True


def baseline_rows() -> list[Row]:
    return kang_2014_rows() + jennings_rows()
