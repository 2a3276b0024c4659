"""``keystrap demo``: the whole scheme in one process, narrated for a newcomer.

Three parties run as the sans-I/O state machines over a virtual clock; the
narration follows the paper's Figure 4. No key byte is ever printed: keys are
only compared.
"""

from __future__ import annotations

import secrets
import sys
from typing import TextIO

from keystrap.ids import eui64
from keystrap.protocol import ControllerState, InMemoryRepository, NodeState, NodeStatus
from keystrap.wire import FlightType, peek_type
from keystrap_lab.simulation import Simulation

PATHS = {
    FlightType.F1_HELLO: "node       --OOB-->  controller   ID_i, RN_i",
    FlightType.F2_REQUEST: "controller --CoAP->  server       AE_SKcs(TS, RN_c, flight 1), TID",
    FlightType.F3_GRANT: "server     --CoAP->  controller   AE_SKcs(IK_i, TS, TID)",
    FlightType.F4_CHALLENGE: "controller --OOB-->  node         TID, E_IK(RN_i || RN_c)",
    FlightType.F5_PROOF: "node       --OOB-->  controller   E_PSK(RN_c)",
    FlightType.F6_CONFIRM: "controller --CoAP->  server       AE_SKcs(flight 5)  [keystrap]",
    FlightType.F7_CONFIRMED: "server     --CoAP->  controller   AE_SKcs(ack)       [keystrap]",
}


def run_demo(nodes: int = 3, out: TextIO = sys.stdout) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    controller_id = bytes.fromhex("02000000000000c0")
    ik_n = secrets.token_bytes(16)  # one installer, one initial key for all its nodes
    sk_cs = secrets.token_bytes(16)
    node_ids = [bytes.fromhex("02000000") + n.to_bytes(4, "big") for n in range(1, nodes + 1)]

    say("keystrap demo (in-process): Kang's secure bootstrapping, step by step")
    say("=" * 72)
    say("Enrolment phase (paper section 3):")
    say(f"  * the administrator orders {nodes} nodes from one installer;")
    say("  * all of them share ONE temporary initial key IK_N, known to the installer;")
    say("  * the server (SBS) records each node ID with IK_N; the controller (SBR)")
    say(f"    {eui64(controller_id)} shares a long-term key SK_cs with the server.")
    repository = InMemoryRepository()
    for nid in node_ids:
        repository.enroll(nid, ik_n)
    sim = Simulation(
        repository,
        {controller_id: sk_cs},
        ControllerState(controller_id, sk_cs),
        [NodeState(nid, controller_id, ik_n) for nid in node_ids],
        secrets.token_bytes,
    )
    say()
    say("Bootstrapping phase (paper Figure 4; flights 6-7 are keystrap's confirmation")
    say("that lets the server drop IK only once the node provably holds the new PSK):")
    for nid in node_ids:
        sim.start(nid)
    sim.run()
    for nid in node_ids:
        say()
        say(f"node {eui64(nid)}")
        for _, message, _ in sim.trace.deliveries:
            if message.node_id != nid:
                continue
            kind = peek_type(message.data)
            say(f"  flight {int(kind)}  {PATHS[kind]}  ({len(message.data)} B)")
        for _, role, event in sim.trace.events:
            if getattr(event, "node_id", None) == nid:
                say(f"            {role:<10} {type(event).__name__}")

    say()
    say("Checks (keys are compared, never shown):")
    ok = True
    for nid in node_ids:
        node = sim.node_states[nid]
        record = repository.nodes[nid]
        same = node.key == record.key
        fresh = node.key != ik_n
        active = record.status is NodeStatus.ACTIVE
        ok &= same and fresh and active
        say(
            f"  {eui64(nid)}  node and server hold the same PSK: {_yn(same)}   "
            f"IK_N replaced: {_yn(fresh)}   server status: {record.status.value}"
        )
    initial_gone = all(r.key != ik_n for r in repository.nodes.values())
    leftover = any(t.psk is not None for t in repository.transactions.values())
    say(f"  repository holds no IK_N any more: {_yn(initial_gone)}")
    say(f"  no half-finished candidate key left: {_yn(not leftover)}")
    say()
    say("Why the installer is locked out: PSK_i = AES_IK(RN_i XOR RN_c). The installer")
    say("knows IK_N and can read flight 1, but RN_c travels only inside flight 2")
    say("(sealed under SK_cs) and flight 4 (out of band), so it never learns RN_c.")
    ok &= initial_gone and not leftover
    say()
    say("demo result: " + ("all nodes bootstrapped" if ok else "FAILED"))
    return 0 if ok else 1


def _yn(flag: bool) -> str:
    return "yes" if flag else "NO"
