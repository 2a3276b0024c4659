import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keystrap.protocol import ControllerState, InMemoryRepository, NodeState, ServerPolicy
from keystrap.protocol.node import CoreFactory, local_core
from keystrap_lab.pg_cluster import PrivateCluster, private_cluster
from keystrap_lab.simulation import Simulation

VECTORS = Path(__file__).parent / "vectors"

CONTROLLER_ID = bytes.fromhex("02000000000000c0")


def load_vectors(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    return list(data["vectors"])


def node_id(n: int) -> bytes:
    return bytes.fromhex("02000000") + n.to_bytes(4, "big")


def make_simulation(
    nodes: int = 1,
    *,
    shared_ik: bytes | None = None,
    rng: Callable[[int], bytes] | None = None,
    policy: ServerPolicy | None = None,
    node_core: CoreFactory = local_core,
) -> Simulation[InMemoryRepository]:
    """One controller, ``nodes`` enrolled nodes sharing one IK_N (the paper's default)."""
    ik = shared_ik or secrets.token_bytes(16)
    sk_cs = secrets.token_bytes(16)
    repository = InMemoryRepository()
    states = []
    for n in range(1, nodes + 1):
        repository.enroll(node_id(n), ik)
        states.append(NodeState(node_id(n), CONTROLLER_ID, ik))
    return Simulation(
        repository,
        {CONTROLLER_ID: sk_cs},
        ControllerState(CONTROLLER_ID, sk_cs),
        states,
        rng or secrets.token_bytes,
        policy=policy,
        node_core=node_core,
    )


@pytest.fixture
def sim() -> Simulation[InMemoryRepository]:
    return make_simulation()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PrivateCluster]:
    """One private PostgreSQL cluster for every PostgreSQL test of the session
    (initdb takes seconds); each test gets a database of its own (:func:`pg_url`)."""
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PrivateCluster) -> str:
    return pg_cluster.create_database(f"t{secrets.token_hex(6)}")
