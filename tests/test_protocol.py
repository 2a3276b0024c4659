"""Every check of the paper (section 4, Figure 4) and of our no-brick rule."""

import secrets

import pytest

from keystrap.crypto import aes_encrypt_block, xor_bytes
from keystrap.protocol import (
    BootstrapConfirmed,
    NodeActivated,
    NodeStage,
    NodeStatus,
    Rejected,
    Reply,
    ServerPolicy,
    Status,
    TransactionFailed,
    TransactionStage,
    TransactionStatus,
    derive_psk,
)
from keystrap.protocol.server import Server
from keystrap.wire import Flight1, Flight2, Flight4, Flight5, FlightType

from .conftest import CONTROLLER_ID, make_simulation, node_id
from .stepper import NOW, Parties


def test_complete_bootstrap_replaces_ik_everywhere() -> None:
    sim = make_simulation(nodes=3)
    ik = sim.repository.nodes[node_id(1)].key
    for n in range(1, 4):
        sim.start(node_id(n))
    sim.run()
    psks = set()
    for n in range(1, 4):
        state = sim.node_states[node_id(n)]
        record = sim.repository.nodes[node_id(n)]
        assert state.stage is NodeStage.KEYED
        assert state.key == record.key != ik
        assert record.status is NodeStatus.ACTIVE
        assert state.session_key is not None and state.session_key != state.key
        psks.add(state.key)
    assert len(psks) == 3  # one IK_N, three different PSKs
    assert all(t.psk is None and t.grant is None for t in sim.repository.transactions.values())
    assert all(
        t.status is TransactionStatus.CONFIRMED for t in sim.repository.transactions.values()
    )
    done = [e for _, _, e in sim.trace.events if isinstance(e, BootstrapConfirmed)]
    assert len(done) == 3


def test_psk_is_exactly_aes_of_xored_randoms() -> None:
    p = Parties()
    p.run_until()
    tx = p.controller.state.transactions[p.tid]
    expected = aes_encrypt_block(p.ik, xor_bytes(tx.rn_i, tx.rn_c))
    assert p.node.state.key == expected == derive_psk(p.ik, tx.rn_i, tx.rn_c)
    assert p.repository.nodes[p.nid].key == expected


# -- server checks -----------------------------------------------------------------


def test_server_refuses_unknown_controller() -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    before = p.snapshot(FlightType.F2_REQUEST)
    reply = Server(p.repository, {}).handle(f2, NOW)
    assert reply.status is Status.UNAUTHORIZED
    assert p.snapshot(FlightType.F2_REQUEST) == before


def test_server_refuses_controller_with_wrong_sk_cs() -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    impostor = Server(p.repository, {CONTROLLER_ID: secrets.token_bytes(16)})
    assert impostor.handle(f2, NOW).status is Status.UNAUTHORIZED


@pytest.mark.parametrize("skew", [-121, 121, 3600])
def test_server_refuses_timestamp_outside_window(skew: int) -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    reply = p.server.handle(f2, NOW + skew)
    assert reply.status is Status.FORBIDDEN and "stale" in reply.reason
    assert p.repository.transactions == {}


def test_server_accepts_timestamp_inside_window() -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    assert p.server.handle(f2, NOW + 119).status is Status.OK


def test_retransmitted_flight2_gets_identical_flight3_and_no_second_rekey() -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    first = p.server.handle(f2, NOW)
    second = p.server.handle(f2, NOW + 5)
    assert first.status is second.status is Status.OK
    assert first.payload == second.payload
    assert first.event is not None and second.event is None
    assert len(p.repository.transactions) == 1


def test_used_tid_with_other_content_is_refused() -> None:
    p = Parties()
    flights = p.run_until(FlightType.F2_REQUEST)
    f2 = flights[FlightType.F2_REQUEST]
    assert p.server.handle(f2, NOW).status is Status.OK
    hello = Flight1.decode(flights[FlightType.F1_HELLO])
    # the same flight 1 and TID, another RN_c
    forged = Flight2(CONTROLLER_ID, p.tid, int(NOW), secrets.token_bytes(16), hello).seal(p.sk_cs)
    reply = p.server.handle(forged, NOW)
    assert reply.status is Status.FORBIDDEN and "TID" in reply.reason


def test_tid_reuse_after_completion_is_refused() -> None:
    p = Parties()
    flights = p.run_until()
    reply = p.server.handle(flights[FlightType.F2_REQUEST], NOW)
    assert reply.status is Status.FORBIDDEN


def test_unknown_and_revoked_nodes_are_refused() -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    p.repository.revoke(p.nid)
    assert p.server.handle(f2, NOW).status is Status.FORBIDDEN
    del p.repository.nodes[p.nid]
    assert p.server.handle(f2, NOW).status is Status.NOT_FOUND


def test_pending_limit_per_node() -> None:
    sim = make_simulation()
    sim.server = Server(sim.repository, sim.controllers, ServerPolicy(max_pending=2))
    server = sim.server
    sk = sim.controllers[CONTROLLER_ID]
    f1 = Flight1(node_id(1), bytes(16))
    statuses = [
        server.handle(
            Flight2(CONTROLLER_ID, tid, int(sim.now), bytes(16), f1).seal(sk), sim.now
        ).status
        for tid in (1, 2, 3)
    ]
    assert statuses == [Status.OK, Status.OK, Status.TOO_MANY_REQUESTS]


# -- controller checks -------------------------------------------------------------


def test_controller_rejects_flight3_of_another_transaction() -> None:
    p = Parties()
    old_grant = p.run_until()[FlightType.F3_GRANT]  # transaction 1, completed
    p.node.start(NOW + 10)  # re-installation: transaction 2
    p.deliver(FlightType.F1_HELLO, p.node.data_to_send()[0], now=NOW + 10)
    assert p.tid == 2
    while p.controller.next_event() is not None:
        pass
    before = p.controller.state
    p.last_reply = Reply(Status.OK, old_grant)
    assert p.deliver(FlightType.F3_GRANT, old_grant) is None
    assert p.controller.state == before
    event = p.controller.next_event()
    assert isinstance(event, Rejected) and "authentication" in event.reason


def test_controller_rejects_flight5_with_wrong_rn_c() -> None:
    p = Parties()
    p.run_until(FlightType.F5_PROOF)
    tx = p.controller.state.transactions[p.tid]
    assert tx.psk is not None
    forged = Flight5(CONTROLLER_ID, p.tid, p.nid, secrets.token_bytes(16)).seal(tx.psk)
    before = p.controller.state
    assert p.deliver(FlightType.F5_PROOF, forged) is None
    assert p.controller.state == before


def test_controller_fails_transaction_on_refusal() -> None:
    p = Parties()
    f2 = p.run_until(FlightType.F2_REQUEST)[FlightType.F2_REQUEST]
    p.deliver(FlightType.F2_REQUEST, f2, now=NOW + 500)  # stale at the server
    assert p.last_reply is not None and p.last_reply.status is Status.FORBIDDEN
    p.deliver(FlightType.F3_GRANT, p.last_reply.payload)
    tx = p.controller.state.transactions[p.tid]
    assert tx.stage is TransactionStage.FAILED
    events = []
    while (e := p.controller.next_event()) is not None:
        events.append(e)
    assert any(isinstance(e, TransactionFailed) for e in events)


# -- node checks --------------------------------------------------------------------


def test_node_rejects_flight4_for_another_rn_i() -> None:
    p = Parties()
    p.run_until(FlightType.F4_CHALLENGE)
    forged = Flight4(CONTROLLER_ID, p.tid, p.nid, secrets.token_bytes(16), bytes(16)).seal(p.ik)
    before = p.node.state
    assert p.deliver(FlightType.F4_CHALLENGE, forged) is None
    assert p.node.state == before
    event = p.node.next_event()
    assert isinstance(event, Rejected) and "RN_i" in event.reason


def test_node_rejects_flight4_sealed_without_ik() -> None:
    p = Parties()
    p.run_until(FlightType.F4_CHALLENGE)
    rn_i = p.node.state.rn_i
    assert rn_i is not None
    forged = Flight4(CONTROLLER_ID, p.tid, p.nid, rn_i, bytes(16)).seal(secrets.token_bytes(16))
    before = p.node.state
    assert p.deliver(FlightType.F4_CHALLENGE, forged) is None
    assert p.node.state == before


def test_node_answers_duplicate_flight4_with_same_flight5() -> None:
    p = Parties()
    flights = p.run_until(FlightType.F5_PROOF)
    again = p.deliver(FlightType.F4_CHALLENGE, flights[FlightType.F4_CHALLENGE])
    assert again == flights[FlightType.F5_PROOF]


def test_reinstallation_uses_current_psk_as_initial_key() -> None:
    sim = make_simulation()
    nid = node_id(1)
    sim.start(nid)
    sim.run()
    first = sim.node_states[nid].key
    sim.start(nid)
    sim.run()
    second = sim.node_states[nid].key
    assert second != first and sim.repository.nodes[nid].key == second
    activations = [e for _, _, e in sim.trace.events if isinstance(e, NodeActivated)]
    assert len(activations) == 2
