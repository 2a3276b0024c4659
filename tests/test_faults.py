"""No bricked node, no lost key: exhaustive fault injection over the state machines.

For every point in a bootstrap we drop a flight, duplicate it, crash its
recipient right after it persisted its state (so its answer is lost), or restart
any party from its persisted state -- and every pair of such message faults.
Each run must end with node and server holding the same key, no IK anywhere,
and a later bootstrap (re-installation) must still work.
"""

import itertools

import pytest

from keystrap.protocol import (
    InMemoryRepository,
    NodeStage,
    NodeStatus,
    ServerPolicy,
    TransactionStage,
    TransactionStatus,
)
from keystrap_lab.simulation import Fault, Message, Simulation

from .conftest import make_simulation, node_id

NID = node_id(1)
# A clean run has 7 deliveries; faults reach further, into the retransmissions.
POINTS = range(12)
MESSAGE_FAULTS = [Fault.DROP, Fault.DUPLICATE, Fault.RESTART_RECIPIENT]
PARTIES = ["node", "controller", "server"]


def settle(sim: Simulation[InMemoryRepository]) -> None:
    """Both ends agree on one key, and IK exists nowhere."""
    node = sim.node_states[NID]
    record = sim.repository.nodes[NID]
    assert node.stage is NodeStage.KEYED
    assert node.key == record.key
    assert record.status is NodeStatus.ACTIVE
    assert node.key != INITIAL_KEY[id(sim)]
    for tx in sim.repository.transactions.values():
        assert tx.psk is None and tx.grant is None  # no candidate or sealed IK left
        assert tx.status is not TransactionStatus.PENDING
    for ctx in sim.controller_state.transactions.values():
        assert ctx.stage in (TransactionStage.DONE, TransactionStage.FAILED)
        assert ctx.psk in (None, node.key)


INITIAL_KEY: dict[int, bytes] = {}


def fresh(hardened: bool = False) -> Simulation[InMemoryRepository]:
    sim = make_simulation(policy=ServerPolicy(hardened=hardened))
    INITIAL_KEY[id(sim)] = sim.repository.nodes[NID].key
    sim.start(NID)
    return sim


def reinstall_still_works(sim: Simulation[InMemoryRepository]) -> None:
    old = sim.node_states[NID].key
    sim.start(NID)
    sim.run()
    assert sim.node_states[NID].stage is NodeStage.KEYED
    assert sim.node_states[NID].key == sim.repository.nodes[NID].key != old


def plan(faults: dict[int, Fault]):  # type: ignore[no-untyped-def]
    return lambda index, _message: faults.get(index, Fault.NONE)


def test_clean_run_has_seven_deliveries() -> None:
    sim = fresh()
    sim.run()
    assert sim.deliveries == 7
    settle(sim)


@pytest.mark.parametrize("fault", MESSAGE_FAULTS, ids=lambda f: f.value)
@pytest.mark.parametrize("point", POINTS)
def test_single_message_fault(point: int, fault: Fault) -> None:
    sim = fresh()
    sim.run(plan({point: fault}))
    settle(sim)
    reinstall_still_works(sim)


@pytest.mark.parametrize("party", PARTIES)
@pytest.mark.parametrize("point", POINTS)
def test_restart_any_party_at_any_point(point: int, party: str) -> None:
    sim = fresh()

    def crash(index: int, _message: Message) -> None:
        if index == point:
            sim.restart(party, NID)

    sim.run(after_delivery=crash)
    settle(sim)
    reinstall_still_works(sim)


def test_every_pair_of_message_faults() -> None:
    runs = 0
    for p1, p2 in itertools.combinations(POINTS, 2):
        for f1, f2 in itertools.product(MESSAGE_FAULTS, repeat=2):
            sim = fresh()
            sim.run(plan({p1: f1, p2: f2}))
            settle(sim)
            reinstall_still_works(sim)
            runs += 1
    assert runs == 66 * 9


@pytest.mark.parametrize("point", POINTS)
def test_faults_during_reinstallation(point: int) -> None:
    sim = fresh()
    sim.run()
    first = sim.node_states[NID].key
    sim.start(NID)
    offset = sim.deliveries
    sim.run(plan({offset + point: Fault.DROP, offset + point + 1: Fault.RESTART_RECIPIENT}))
    assert sim.node_states[NID].key == sim.repository.nodes[NID].key != first


def test_abandoned_transaction_after_server_answered_leaves_node_recoverable() -> None:
    """Every flight 3 of the first transaction is lost until the controller gives up.

    Had the server replaced IK at flight 2 (the paper's order), the retry would be
    sealed under a key the node never had and the node would be bricked. Here the
    server kept IK next to the candidate, so the retry completes and the abandoned
    candidate is superseded.
    """
    sim = fresh()
    sim.run(lambda _i, m: Fault.DROP if m.sender == "server" and m.tid == 1 else Fault.NONE)
    first = sim.controller_state.transactions[1]
    assert first.stage is TransactionStage.FAILED
    settle(sim)
    statuses = {tid: tx.status for (_, tid), tx in sim.repository.transactions.items()}
    assert statuses[1] is TransactionStatus.SUPERSEDED
    assert TransactionStatus.CONFIRMED in statuses.values()
    reinstall_still_works(sim)


@pytest.mark.parametrize("fault", MESSAGE_FAULTS, ids=lambda f: f.value)
@pytest.mark.parametrize("point", POINTS)
def test_hardened_profile_single_faults(point: int, fault: Fault) -> None:
    sim = fresh(hardened=True)
    sim.run(plan({point: fault}))
    settle(sim)
    reinstall_still_works(sim)


def test_hardened_controller_never_holds_ik() -> None:
    """With flight 8 the controller's persisted state never contains IK: not in a
    field, and not inside any flight it stored except the sealed flight 4."""
    sim = fresh(hardened=True)
    ik = INITIAL_KEY[id(sim)]
    seen: list[bytes] = []
    sim.run(after_delivery=lambda _i, _m: seen.append(repr(sim.controller_state).encode()))
    settle(sim)
    assert all(ik.hex().encode() not in s and repr(ik).encode() not in s for s in seen)
    kinds = {m.data[0] & 0x0F for _, m, _ in sim.trace.deliveries}
    assert 8 in kinds and 3 not in kinds
