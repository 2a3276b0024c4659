"""The administrator's and installer's commands, through the real CLI."""

import json
import stat
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.enrolment import ids_from_csv, ids_from_range
from keystrap_lab.site import Site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = Site(tmp_path)
    import asyncio

    asyncio.run(s.prepare())
    s.register_controller()
    return s


def test_order_from_range_shared_key(site: Site) -> None:
    out = site.admin(
        "order",
        "create",
        "--installer",
        "acme",
        "--controller",
        site.controller_id,
        "--range",
        "02:00:00:00:00:00:01:00-02:00:00:00:00:00:01:04",
        "--out",
        "b.json",
    )
    assert "5 node(s)" in out and "shared" in out
    bundle = json.loads((site.root / "b.json").read_text())
    assert bundle["key_mode"] == "shared" and len(bundle["nodes"]) == 5
    assert stat.S_IMODE((site.root / "b.json").stat().st_mode) == 0o600
    assert "acme" in site.admin("installer", "list")
    assert "5 enrolled" in site.admin("nodes")


def test_order_from_csv_per_node_keys_and_install(site: Site) -> None:
    csv = site.root / "ids.csv"
    csv.write_text("eui64,label\n02:00:00:00:00:00:02:01,a\n02:00:00:00:00:00:02:02,b\n")
    site.admin(
        "order",
        "create",
        "--installer",
        "bob",
        "--controller",
        site.controller_id,
        "--csv",
        str(csv),
        "--key-mode",
        "per-node",
        "--out",
        "b.json",
    )
    bundle = json.loads((site.root / "b.json").read_text())
    keys = {n["key"] for n in bundle["nodes"]}
    assert bundle["key_mode"] == "per-node" and len(keys) == 2
    site.cli("install", "b.json", "--out", "nodes")
    files = sorted((site.root / "nodes").glob("*.json"))
    assert [f.name for f in files] == ["0200000000000201.json", "0200000000000202.json"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_listing_and_removal(site: Site) -> None:
    site.enrol(3)
    assert "1 order(s)" in site.admin("order", "list")
    assert "1 controller(s)" in site.admin("controller", "list")
    with pytest.raises(RuntimeError, match="remove them first"):
        site.admin("installer", "remove", "acme")
    assert "3 node(s)" in site.admin("order", "remove", "1")
    site.admin("installer", "remove", "acme")
    site.admin("controller", "remove", site.controller_id)
    assert "0 controller(s)" in site.admin("controller", "list")


def test_revoke_and_node_listing(site: Site) -> None:
    nodes = site.enrol(2)
    node_id = json.loads(nodes[0].read_text())["node_id"]
    eui = ":".join(node_id[i : i + 2] for i in range(0, 16, 2))
    site.admin("revoke", eui)
    listing = site.admin("nodes")
    assert f"{eui}  order 1     revoked" in listing and "1 enrolled" in listing


def test_order_for_unknown_controller_is_refused(site: Site) -> None:
    with pytest.raises(RuntimeError, match="not registered"):
        site.admin(
            "order",
            "create",
            "--installer",
            "x",
            "--controller",
            "02:00:00:00:00:00:00:99",
            "--count",
            "1",
            "--out",
            "b.json",
        )


def test_bad_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ids_from_range("02:00:00:00:00:00:00:05-02:00:00:00:00:00:00:01")
    bad = tmp_path / "bad.csv"
    bad.write_text("02:00:00:00:00:00:00:01\nnot-an-id\n")
    with pytest.raises(ValueError, match="line 2"):
        ids_from_csv(bad)


def test_cli_error_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    assert "cannot read bundle" in capsys.readouterr().err


def test_diversified_keys_one_ik_n_distinct_node_keys(site: Site) -> None:
    from keystrap.enrolment import diversify
    from keystrap.store.node_file import load_node_file

    nodes = site.enrol(3, key_mode="diversified")
    bundle = json.loads((site.root / "nodes-bundle.json").read_text())
    ik_n = bytes.fromhex(bundle["shared_key"])
    keys = [load_node_file(p).state.key for p in nodes]
    assert len(set(keys)) == 3 and ik_n not in keys
    for path, key in zip(nodes, keys, strict=True):
        assert key == diversify(ik_n, load_node_file(path).state.node_id)
