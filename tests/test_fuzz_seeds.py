"""The fuzz targets' committed seeds are valid inputs their decoders accept, and
are what fuzz/make_seeds.py makes (so `make fuzz` on a fresh clone starts inside
each format, not at its first check)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from keystrap.config import ControllerConfig, ServerConfig, load_config
from keystrap.enrolment import install_bundle
from keystrap.oob.audio import from_wav
from keystrap.oob.base45 import b45decode
from keystrap.oob.frame import OobDecodeError, unframe
from keystrap.oob.light import LightMedium, parse_schedule
from keystrap.oob.medium import decode_flight
from keystrap.oob.nfc import NfcMedium
from keystrap.oob.qr import QrMedium
from keystrap.settings import NodeSettings, apply_update, parse_update
from keystrap.store.node_file import load_node_file
from keystrap.wire import (
    Flight1,
    Flight2,
    Flight3,
    Flight4,
    Flight5,
    Flight6,
    Flight7,
    Flight9,
    Flight12,
    FlightType,
    peek_type,
)

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def load_make_seeds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_seeds", FUZZ / "make_seeds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_seeds", module)
    spec.loader.exec_module(module)
    return module


SEEDS = load_make_seeds()
KEY, CID, NID = SEEDS.KEY, SEEDS.CID, SEEDS.NID
OOB_FLIGHTS = {FlightType.F1_HELLO, FlightType.F4_CHALLENGE, FlightType.F5_PROOF}


def out_of_band(framed: bytes) -> None:
    assert peek_type(unframe(framed, "test")) in OOB_FLIGHTS


WIRE: dict[str, Callable[[bytes], object]] = {
    "flight-1": Flight1.decode,
    "flight-2": lambda d: Flight2.open(d, KEY),
    "flight-3": lambda d: Flight3.open(d, KEY, controller_id=CID, tid=1, node_id=NID),
    "flight-4": lambda d: Flight4.open(d, KEY, controller_id=CID, node_id=NID),
    "flight-5": Flight5.peek_tid,
    "flight-6": lambda d: Flight6.open(d, KEY),
    "flight-7": lambda d: Flight7.open(d, KEY, controller_id=CID, tid=1, node_id=NID),
    "flight-12": Flight12.decode,
    "revocation-query": lambda d: Flight9.open(d, KEY),
}
OOB: dict[str, Callable[[bytes], object]] = {
    "frame": out_of_band,
    "ndef": lambda d: out_of_band(NfcMedium().demodulate(d)),
    "schedule": lambda d: parse_schedule(d, "light"),
    "trace": lambda d: out_of_band(LightMedium().demodulate(d)),
    "base45": lambda d: out_of_band(b45decode(d.decode())),
    "wav": lambda d: from_wav(d, "audio"),
}


def seed_files(target: str) -> list[Path]:
    files = sorted((FUZZ / "seeds" / target).iterdir())
    assert files, f"no seeds for {target}"
    return files


def test_committed_seeds_are_what_the_script_makes() -> None:
    """The config seeds only need to load (below): a new option would otherwise
    fail this test until someone ran `make fuzz-seeds`."""
    made = SEEDS.seeds()
    made["config"] = {p.name: p.read_bytes() for p in seed_files("config")}
    committed = {target: {p.name: p.read_bytes() for p in seed_files(target)} for target in made}
    assert committed == made
    makefile = (FUZZ.parent / "Makefile").read_text()
    targets = makefile.split("FUZZ_TARGETS :=")[1].splitlines()[0].split()
    assert sorted(targets) == sorted(made)  # every target has seeds, and `make fuzz` uses them
    assert "fuzz/seeds/$$target" in makefile


@pytest.mark.parametrize("path", seed_files("wire"), ids=lambda p: p.name)
def test_wire_seeds_decode(path: Path) -> None:
    decode = WIRE.get(path.name, peek_type)
    decode(path.read_bytes())


@pytest.mark.parametrize("path", seed_files("oob"), ids=lambda p: p.name)
def test_out_of_band_seeds_decode(path: Path) -> None:
    OOB[path.name.split("-")[0]](path.read_bytes())


@pytest.mark.parametrize("path", seed_files("qr"), ids=lambda p: p.name)
def test_qr_seeds_decode(path: Path) -> None:
    assert peek_type(decode_flight(QrMedium(), path.read_bytes())) in OOB_FLIGHTS


def test_config_and_settings_seeds_load(tmp_path: Path) -> None:
    seeds = FUZZ / "seeds"
    server = load_config(ServerConfig, seeds / "config" / "server-toml", {})
    assert server.port == ServerConfig().port
    controller = seeds / "config" / "controller-toml"
    assert load_config(ControllerConfig, controller, {}).id == ControllerConfig().id
    assert load_node_file(seeds / "config" / "node-file").state.node_id == NID
    assert len(install_bundle(seeds / "config" / "bundle", tmp_path / "out")) == 1
    update = parse_update((seeds / "settings" / "update").read_bytes())
    assert apply_update(NodeSettings(), update).network["domain"] == "example.org"


def test_a_png_claiming_a_huge_chunk_is_refused_before_opencv() -> None:
    """What fuzzing from the QR seeds found: a 375-byte PNG whose IDAT length
    field says 2.6 GB made OpenCV allocate 2.5 GB before failing."""
    png = bytearray((FUZZ / "seeds" / "qr" / "png-1").read_bytes())
    idat = png.index(b"IDAT") - 4
    png[idat : idat + 4] = (2_634_023_230).to_bytes(4, "big")
    with pytest.raises(OobDecodeError, match="malformed PNG"):
        QrMedium().demodulate(bytes(png))
    assert peek_type(decode_flight(QrMedium(), (FUZZ / "seeds" / "qr" / "png-1").read_bytes()))
    trailing = (FUZZ / "seeds" / "qr" / "png-4").read_bytes() + b"trailing bytes"
    assert peek_type(decode_flight(QrMedium(), trailing)) is FlightType.F4_CHALLENGE
