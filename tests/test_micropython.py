"""The node core on MicroPython 1.27 (WebAssembly port, under Node.js), and the
pure-Python AES block function it uses there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from keystrap.nodecore.aes import encrypt_block
from keystrap.nodecore.host_link import handle
from keystrap.protocol import NodeStage, NodeState, NodeStatus
from keystrap.protocol.node import local_core
from keystrap.runtime import MicroPython, RuntimeUnavailable
from keystrap.store.node_file import NodeFile, load_node_file, save_node_file
from keystrap.wire import FLIGHTS, Flight11, FlightType
from keystrap_lab.processes import keystrap_command
from keystrap_lab.simulation import Fault
from keystrap_lab.site import Site

from .conftest import load_vectors, make_simulation, node_id

h = bytes.fromhex
VECTORS = load_vectors("bootstrap.json")
# Both profiles: the paper's vectors (version 1) and the compact profile's (version 2).
ALL_VECTORS = VECTORS + load_vectors("compact.json")


@pytest.fixture(scope="module")
def micropython() -> Iterator[MicroPython]:
    with MicroPython() as runtime:
        yield runtime


# -- the AES block function ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "plaintext", "ciphertext"),
    [
        # FIPS-197 appendix B, and appendix C.1 (AES-128)
        ("2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734",
         "3925841d02dc09fbdc118597196a0b32"),
        ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
         "69c4e0d86a7b0430d8cdb78070b4c55a"),
    ],
)  # fmt: skip
def test_aes_fips197(key: str, plaintext: str, ciphertext: str) -> None:
    assert encrypt_block(h(key), h(plaintext)) == h(ciphertext)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=3),
    block=st.binary(min_size=16, max_size=16),
)
def test_aes_matches_cryptography(keys: list[bytes], block: bytes) -> None:
    """Alternating keys also exercise the cached round keys."""
    for key in keys + keys[:1]:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        assert encrypt_block(key, block) == encryptor.update(block) + encryptor.finalize()


def test_aes_refuses_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="16-byte"):
        encrypt_block(bytes(15), bytes(16))


# -- the line protocol, and every vector inside MicroPython ----------------------------


def fields(*values: bytes) -> str:
    return " ".join(v.hex() or "-" for v in values)


def run_vector(ask: Callable[[str], str], v: dict[str, object]) -> None:
    """Flights 1 and 5, PSK_i and SK_i of one vector; damaged flight 4s change nothing."""
    flights = v["flights"]
    assert isinstance(flights, dict)
    nid, cid, ik, rn_i = h(str(v["ID_i"])), h(str(v["ID_c"])), h(str(v["IK"])), h(str(v["RN_i"]))
    version = int(str(v.get("version", 1)))
    f4 = h(flights["4"])
    hello = f"hello {version} {fields(nid, cid, ik, b'', b'', b'', b'', rn_i)}"
    ok, *state, f1 = ask(hello).split()
    assert ok == "ok" and h(f1) == h(flights["1"])
    assert state == [ik.hex(), rn_i.hex(), "-", "-", "-"]
    waiting = f"{version} {fields(nid, cid, ik, rn_i, b'', b'', b'')}"
    other = bytes([(3 - version) << 4 | 4])  # flight 4's header of the other profile
    for damaged in (f4[:-1], other + f4[1:], f4[:20] + bytes([f4[20] ^ 1]) + f4[21:]):
        refused, *after = ask(f"answer {waiting} {fields(damaged)}").split()
        assert refused == "refused" and after[:5] == [ik.hex(), rn_i.hex(), "-", "-", "-"]
    ok, key, rest, sk, stored4, stored5, f5 = ask(f"answer {waiting} {fields(f4)}").split()
    assert ok == "ok" and h(f5) == h(flights["5"]) and rest == "-"
    assert (key, sk) == (v["PSK"], v["SK_i"]) and h(stored4) == f4 and stored5 == f5
    keyed = f"{version} {fields(nid, cid, h(key), b'', h(sk), f4, h(f5))}"
    assert ask(f"answer {keyed} {fields(f4)}").split()[-1] == f5  # the same flight 5 again
    tid = int.from_bytes(f4[1:5], "big")
    flight11 = _flight11(version)(cid, tid, nid).seal(h(sk))
    assert ask(f"confirm {keyed} {fields(flight11)}").split()[0] == "ok"
    assert ask(f"confirm {keyed} {fields(flight11[:-1] + b'x')}").split()[0] == "refused"
    other11 = _flight11(3 - version)(cid, tid, nid).seal(h(sk))
    assert ask(f"confirm {keyed} {fields(other11)}").split()[0] == "refused"


@pytest.mark.parametrize("v", ALL_VECTORS, ids=lambda v: f"v{v.get('version', 1)}-{v['ID_i']}")
def test_vectors_through_the_line_protocol(v: dict[str, object]) -> None:
    run_vector(handle, v)


def test_every_vector_under_micropython(micropython: MicroPython) -> None:
    def ask(line: str) -> str:
        return " ".join(micropython.request(line))

    for v in ALL_VECTORS:
        run_vector(ask, v)


def test_line_protocol_rejects_garbage(micropython: MicroPython) -> None:
    short_key = "hello 1 0200000000000001 02000000000000c0 00ff - - - - " + "00" * 16
    no_version = "hello 0200000000000001 02000000000000c0 " + "00" * 16 + " - - - - " + "00" * 16
    bad_version = "hello 3" + no_version.removeprefix("hello")
    garbage = ("", "hello", "answer 1 " + "zz " * 8, "reset 1 " + "- " * 8, short_key)
    for line in (*garbage, no_version, bad_version):
        assert handle(line).startswith("error")
        with pytest.raises(Exception, match="error"):
            micropython.request(line)


# -- the protocol's node, its core in MicroPython ---------------------------------------


def _flight11(version: int) -> type[Flight11]:
    kind = FLIGHTS[version][FlightType.F11_NODE_CONFIRMED]
    assert issubclass(kind, Flight11)
    return kind


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.DUPLICATE, Fault.RESTART_RECIPIENT])
@pytest.mark.parametrize("point", range(8))
def test_faults_with_the_core_in_micropython(
    micropython: MicroPython, fault: Fault, point: int
) -> None:
    """One fault at each delivery of a bootstrap; node and server end on one PSK."""
    sim = make_simulation(node_core=micropython.core)
    ik = sim.repository.nodes[node_id(1)].key
    sim.start(node_id(1))
    sim.run(lambda index, _m: fault if index == point else Fault.NONE)
    node, record = sim.node_states[node_id(1)], sim.repository.nodes[node_id(1)]
    assert node.stage is NodeStage.KEYED and record.status is NodeStatus.ACTIVE
    assert node.key == record.key != ik


@pytest.mark.parametrize("v", [VECTORS[0], ALL_VECTORS[-1]], ids=["paper", "compact"])
def test_micropython_core_matches_the_local_core(
    micropython: MicroPython, v: dict[str, Any]
) -> None:
    version = int(v.get("version", 1))
    state = NodeState(h(v["ID_i"]), h(v["ID_c"]), h(v["IK"]), rn_i=h(v["RN_i"]), version=version)
    for core in (micropython.core(state), local_core(state)):
        assert core.answer(h(v["flights"]["4"])).hex() == v["flights"]["5"]
        assert (core.key.hex(), core.session_key.hex()) == (v["PSK"], v["SK_i"])


# -- against the real services -----------------------------------------------------------


@pytest.mark.parametrize("profile", ["paper", "compact"])
def test_micropython_node_bootstraps_against_the_services(tmp_path: Path, profile: str) -> None:
    """``keystrap node --runtime micropython``, real server and controller processes."""

    async def scenario() -> None:
        site = Site(tmp_path, channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        [path] = site.enrol(1, profile=profile)
        ik = load_node_file(path).state.key
        await site.start()
        try:
            args = ("--runtime", "micropython", "--timeout", "30", "--linger", "5")
            out = await asyncio.to_thread(site.cli, "node", str(path), *args)
            assert ": confirmed in" in out and "node core in MicroPython v1.27" in out
            state = load_node_file(path).state
            assert state.stage is NodeStage.KEYED and state.rn_i is None
            assert site.server_keys()[state.node_id] == state.key != ik
            assert site.admin("nodes").strip().endswith("1 node(s): 1 active")
            assert load_node_file(path).confirmed
            assert (
                state.proof is not None
                and len(state.proof) == {"paper": 29, "compact": 13}[profile]
            )
        finally:
            site.stop()

    asyncio.run(scenario())


def test_missing_nodejs_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("keystrap.runtime.micropython.shutil.which", lambda _name: None)
    with pytest.raises(RuntimeUnavailable, match=r"Node.js \(node\) is not installed"):
        MicroPython()


def test_cli_without_nodejs_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    state = NodeState(node_id(1), bytes(8), bytes(16))
    save_node_file(path, NodeFile(state, "127.0.0.1", 5684, f"unix:{tmp_path / 'oob.sock'}"))
    done = subprocess.run(
        keystrap_command("node", str(path), "--runtime", "micropython", "--timeout", "1"),
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "keystrap: Node.js (node) is not installed: run make setup"
    ]


@pytest.mark.parametrize("says_ready", [False, True], ids=["at-start", "mid-bootstrap"])
def test_a_runtime_that_hangs_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, says_ready: bool
) -> None:
    """A runtime that never answers (at start, or to flight 1's request) is killed
    after REPLY_SECONDS and reported; the agent was held past its --timeout."""
    fake = tmp_path / "node"
    fake.write_text(
        "#!/bin/sh\n" + ("echo 'ready MicroPython vX'\n" if says_ready else "") + "exec sleep 20\n"
    )
    fake.chmod(0o700)
    monkeypatch.setattr("keystrap.runtime.micropython.shutil.which", lambda _name: str(fake))
    monkeypatch.setattr("keystrap.runtime.micropython.REPLY_SECONDS", 0.5, raising=False)
    outcome: list[BaseException] = []

    def bootstrap() -> None:
        try:
            with MicroPython() as runtime:
                runtime.core(NodeState(node_id(1), bytes(8), bytes(16))).hello(bytes(16))
        except RuntimeUnavailable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=bootstrap, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the agent still waits for the runtime"
    assert [str(exc) for exc in outcome] == ["MicroPython did not answer within 0.5 s"]


@pytest.mark.parametrize(
    "reply",
    [
        "ok zz - - - - -",  # not hex
        "ok - - - - - 00",  # no key: the node file would not load again
        "ok " + "00" * 16 + " - " + "00" * 16 + " 00 00 00",  # flights of no size
    ],
    ids=["not-hex", "no-key", "flight-sizes"],
)
def test_a_runtime_answering_a_malformed_state_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply: str
) -> None:
    """What the runtime hands back is saved as the node's state: one a node file
    cannot hold (it would not load again) is refused, and the core keeps its own."""
    fake = tmp_path / "node"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nprint('ready MicroPython vX', flush=True)\n"
        f"for _ in sys.stdin:\n    print({reply!r}, flush=True)\n"
    )
    fake.chmod(0o700)
    monkeypatch.setattr("keystrap.runtime.micropython.shutil.which", lambda _name: str(fake))
    v = VECTORS[0]
    state = NodeState(h(v["ID_i"]), h(v["ID_c"]), h(v["IK"]), rn_i=h(v["RN_i"]))
    with MicroPython() as runtime:
        core = runtime.core(state)
        with pytest.raises(RuntimeUnavailable, match="MicroPython answered"):
            core.answer(h(v["flights"]["4"]))
    assert (core.key, core.rn_i, core.session_key) == (state.key, state.rn_i, b"")
