"""Protocol core benchmark: bytes per flight and CPU time per role for one bootstrap.

Drives node, controller and server in-process (no I/O) and measures each role's
own calls with the thread CPU clock. Prints a table, then one JSON line.

    python bench/core.py [--runs N] [--held N]

The controller keeps finished transactions for a day (``keep_finished``), so it
also reports the controller's cost per bootstrap while it holds ``--held`` of them.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from keystrap.protocol import (
    Controller,
    ControllerState,
    InMemoryRepository,
    Node,
    NodeState,
    Server,
    ToNode,
    ToServer,
)
from keystrap.wire import FLIGHT_SIZES, FlightType

T = TypeVar("T")
CONTROLLER_ID = bytes.fromhex("02000000000000c0")


def timed(bucket: list[int], call: Callable[[], T]) -> T:
    start = time.thread_time_ns()
    result = call()
    bucket.append(time.thread_time_ns() - start)
    return result


def one_bootstrap(
    n: int,
    repository: InMemoryRepository,
    server: Server,
    controller: Controller,
    ik: bytes,
    now: float,
) -> dict[str, int]:
    node_id = n.to_bytes(8, "big")
    repository.enroll(node_id, ik)
    node = Node(NodeState(node_id, CONTROLLER_ID, ik), secrets.token_bytes)
    spent: dict[str, list[int]] = {"node": [], "controller": [], "server": []}

    def node_step(data: bytes | None) -> bytes:
        if data is None:
            node.start(now)
        else:
            node.receive(data, now)
        return node.data_to_send()[0]

    def controller_from_node(data: bytes) -> ToServer:
        controller.receive_from_node(data, now)
        out = controller.data_to_send()[0]
        assert isinstance(out, ToServer)
        return out

    f1 = timed(spent["node"], lambda: node_step(None))
    f2 = timed(spent["controller"], lambda: controller_from_node(f1))
    f3 = timed(spent["server"], lambda: server.handle(f2.data, now))

    def controller_grant() -> ToNode:
        controller.receive_from_server(f2.tid, f3, now)
        out = controller.data_to_send()[0]
        assert isinstance(out, ToNode)
        return out

    f4 = timed(spent["controller"], controller_grant)
    f5 = timed(spent["node"], lambda: node_step(f4.data))
    f6 = timed(spent["controller"], lambda: controller_from_node(f5))
    f7 = timed(spent["server"], lambda: server.handle(f6.data, now))
    timed(spent["controller"], lambda: controller.receive_from_server(f6.tid, f7, now))
    assert repository.nodes[node_id].key == node.state.key
    return {role: sum(ns) for role, ns in spent.items()}


BLOCK_CALL_FLOOR = 1 + 6 + 4 + 2


def node_core_block_calls() -> int:
    """AES block calls the minimal node core makes for one whole bootstrap."""
    from keystrap.crypto import aes_encrypt_block
    from keystrap.nodecore import CountingBlock, MinimalNode
    from keystrap_lab.vectors import VectorInputs, run_vector

    inputs = VectorInputs(
        bytes(16),
        bytes(range(16)),
        bytes(8),
        b"\1" * 8,
        bytes(range(16)),
        bytes(range(16, 32)),
        1,
        1_800_000_000,
    )
    flights = run_vector(inputs)["flights"]
    assert isinstance(flights, dict)
    block = CountingBlock(aes_encrypt_block)
    node = MinimalNode(inputs.node_id, inputs.controller_id, inputs.ik, block)
    node.hello(inputs.rn_i)
    node.answer(bytes.fromhex(flights["4"]))
    return block.calls


def controller_cost_when_holding(
    controller: Controller, done: int, held: int, sk_cs: bytes, ik: bytes, now: float
) -> float:
    """Median controller CPU (µs) per bootstrap once it holds ``held`` finished ones.

    The in-memory repository is a test fake that scans every transaction it has; a
    fresh one per batch keeps the fill from being quadratic in the fake, which is
    not what is measured here."""
    n, samples = done, []
    while n < held + 200:
        repository = InMemoryRepository()
        server = Server(repository, {CONTROLLER_ID: sk_cs})
        for _ in range(500):
            n += 1
            spent = one_bootstrap(n, repository, server, controller, ik, now)
            if n > held:
                samples.append(spent["controller"])
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument(
        "--held",
        type=int,
        default=20_000,
        help="finished transactions the controller holds for the scaling figure",
    )
    args = parser.parse_args()

    repository = InMemoryRepository()
    sk_cs, ik = secrets.token_bytes(16), secrets.token_bytes(16)
    server = Server(repository, {CONTROLLER_ID: sk_cs})
    controller = Controller(ControllerState(CONTROLLER_ID, sk_cs), secrets.token_bytes)
    now = time.time()
    samples: dict[str, list[int]] = {"node": [], "controller": [], "server": []}
    for n in range(args.runs):
        for role, ns in one_bootstrap(n + 1, repository, server, controller, ik, now).items():
            samples[role].append(ns)

    print("Flight sizes (bytes on the wire, before any OOB framing)")
    for kind, size in FLIGHT_SIZES.items():
        print(f"  flight {int(kind)}  {kind.name:<13} {size:>4}")
    oob = sum(
        FLIGHT_SIZES[k] for k in (FlightType.F1_HELLO, FlightType.F4_CHALLENGE, FlightType.F5_PROOF)
    )
    inband = sum(
        FLIGHT_SIZES[k]
        for k in (
            FlightType.F2_REQUEST,
            FlightType.F3_GRANT,
            FlightType.F6_CONFIRM,
            FlightType.F7_CONFIRMED,
        )
    )
    print(f"  out of band total (1, 4, 5): {oob} B    in band total (2, 3, 6, 7): {inband} B")
    print()
    print(f"CPU time per bootstrap, median of {args.runs} (microseconds)")
    medians = {role: statistics.median(ns) / 1000 for role, ns in samples.items()}
    p99 = {role: sorted(ns)[int(len(ns) * 0.99) - 1] / 1000 for role, ns in samples.items()}
    for role in ("node", "controller", "server"):
        print(f"  {role:<11} median {medians[role]:8.1f}   p99 {p99[role]:8.1f}")
    held_median = controller_cost_when_holding(controller, args.runs, args.held, sk_cs, ik, now)
    print(f"  controller holding {args.held:,} finished transactions: median {held_median:.1f}")
    block_calls = node_core_block_calls()
    print()
    print(
        f"Single-primitive node core (keystrap.nodecore): {block_calls} AES block calls per "
        f"bootstrap on the node; the floor for these flight sizes is {BLOCK_CALL_FLOOR}"
    )
    print(
        "  (1 for the derivation block, AES of RN_i XOR RN_c; 6 to open flight 4 and 4 to "
        "seal flight 5 with no associated-data blocks; 2 for a one-block CMAC KDF; keystrap "
        "spends 6 more to bind ID_c, TID and ID_i into both tags and to carry the SP 800-108 "
        "label)"
    )
    print(
        json.dumps(
            {
                "bench": "core",
                "runs": args.runs,
                "flight_bytes": {str(int(k)): size for k, size in FLIGHT_SIZES.items()},
                "oob_bytes": oob,
                "inband_bytes": inband,
                "cpu_us_median": {k: round(v, 1) for k, v in medians.items()},
                "cpu_us_p99": {k: round(v, 1) for k, v in p99.items()},
                "controller_cpu_us_median_at_held": {str(args.held): round(held_median, 1)},
                "node_core_block_calls": block_calls,
                "node_core_block_call_floor": BLOCK_CALL_FLOOR,
            }
        )
    )


if __name__ == "__main__":
    main()
