"""Whole bootstraps through the real services with each out-of-band medium."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.oob.unix import connect
from keystrap.services.node_agent import bootstrap_node
from keystrap_lab.site import Site

from .conftest import load_vectors
from .services_helpers import assert_all_rekeyed, bootstrap_all, run, server_keys, shared_ik

SUFFIX = {"qr": ".png", "nfc": ".ndef", "audio": ".wav", "light": ".csv"}


async def site_with(root: Path, up: str, down: str, count: int) -> tuple[Site, list[Path]]:
    site = Site(root, channels=(up, down), capture=True)
    await site.prepare()
    site.register_controller()
    nodes = site.enrol(count)
    await site.start()
    return site, nodes


@pytest.mark.parametrize("channel", ["qr", "nfc", "audio", "light"])
def test_bootstrap_over_each_medium(tmp_path: Path, channel: str) -> None:
    async def scenario() -> None:
        site, nodes = await site_with(tmp_path, channel, channel, 2)
        try:
            results = await bootstrap_all(nodes, timeout=60)
            assert [r.outcome for r in results] == ["confirmed", "confirmed"]
            assert_all_rekeyed(site, nodes, shared_ik(site))
        finally:
            site.stop()
        signals = sorted(site.signals.iterdir())
        assert signals and all(p.suffix == SUFFIX[channel] for p in signals)
        # flights 1 and 5 received, flight 4 sent, per node, at the controller
        assert len([p for p in signals if p.name.startswith("sbr-")]) == 6

    run(scenario())


def test_a_different_medium_each_way(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await site_with(tmp_path, "qr", "light", 1)
        try:
            (result,) = await bootstrap_all(nodes)
            assert result.outcome == "confirmed"
        finally:
            site.stop()
        names = [p.name for p in site.signals.iterdir() if p.name.startswith("sbr-")]
        assert sorted(n.rsplit("-", 2)[1:] for n in names) == [
            ["received", "qr.png"],
            ["received", "qr.png"],
            ["sent", "light.csv"],
        ]

    run(scenario())


def test_damaged_signals_never_reach_the_protocol(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await site_with(tmp_path, "qr", "qr", 1)
        try:
            before = server_keys(site)
            link = await connect(site.oob_socket)
            for garbage in (b"", b"\x89PNG\r\n", bytes(300)):
                if garbage:
                    await link.send(garbage)
            await link.close()
            wrong_medium = await bootstrap_node(
                nodes[0], timeout=3, linger=0, channels=("nfc", "qr")
            )
            assert wrong_medium.outcome.startswith("failed")
            assert server_keys(site) == before
            (result,) = await bootstrap_all(nodes)  # the real device still works
            assert result.outcome == "confirmed"
        finally:
            site.stop()
        log = site.controller.log_text() if site.controller else ""
        assert "unreadable signal discarded: qr: not an image" in log
        assert log.count("flight 1 received") == 1

    run(scenario())


@pytest.mark.parametrize("channel", ["qr", "nfc", "audio", "light"])
def test_oob_cli_encode_decode(
    tmp_path: Path, channel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flight = load_vectors("bootstrap.json")[1]["flights"]["5"]
    out = tmp_path / f"f5.{channel}"
    assert main(["oob", "encode", "--channel", channel, "--hex", flight, "--out", str(out)]) == 0
    assert main(["oob", "decode", "--channel", channel, str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(flight)


def test_oob_cli_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flight2 = load_vectors("bootstrap.json")[0]["flights"]["2"]
    assert (
        main(
            ["oob", "encode", "--channel", "qr", "--hex", flight2, "--out", str(tmp_path / "x.png")]
        )
        == 2
    )
    assert "not an out-of-band flight" in capsys.readouterr().err
    silence = tmp_path / "silence.wav"
    import numpy as np

    from keystrap.oob.audio import to_wav

    silence.write_bytes(to_wav(np.zeros(48_000), 48_000))
    assert main(["oob", "decode", "--channel", "audio", str(silence)]) == 2
    assert "audio: no data-over-sound" in capsys.readouterr().err


def _impairment(channel: str):  # type: ignore[no-untyped-def]
    import numpy as np

    from keystrap_lab.impair import impair_audio, impair_light, impair_qr

    rng = np.random.default_rng(11)
    if channel == "qr":
        return lambda png: impair_qr(png, "all", rng)
    if channel == "audio":
        return lambda wav: impair_audio(wav, rng, snr_db=10, gain=0.05, rate_factor=1.002)
    if channel == "light":
        return lambda trace: impair_light(trace, rng)
    # NFC has no analogue impairment: a damaged message is detected, never decoded.
    return None


@pytest.mark.parametrize("channel", ["qr", "audio", "light"])
def test_bootstrap_through_a_degraded_medium(tmp_path: Path, channel: str) -> None:
    """Flight 4 reaches the node rotated, blurred and noisy (QR), at 10 dB SNR, 5 %
    volume and a 0.2 % clock offset (audio), or noisy, jittered and drifting (light)."""

    async def scenario() -> None:
        site, nodes = await site_with(tmp_path, channel, channel, 2)
        try:
            results = [
                await bootstrap_node(p, timeout=60, linger=10, impair=_impairment(channel))
                for p in nodes
            ]
            # Slow decoding (seconds per degraded WAV) can let the controller repeat
            # flight 4, queuing signals ahead of its "done": a node that holds its PSK
            # ("keyed") has finished its part; the controller confirms on its own.
            assert all(r.ok for r in results), [r.outcome for r in results]
            for _ in range(100):
                try:
                    assert_all_rekeyed(site, nodes, shared_ik(site))
                    break
                except AssertionError:
                    await asyncio.sleep(0.2)
            assert_all_rekeyed(site, nodes, shared_ik(site))
        finally:
            site.stop()

    run(scenario())
