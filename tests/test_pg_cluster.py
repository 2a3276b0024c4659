"""The lab's private PostgreSQL cluster when PostgreSQL's programs fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keystrap.store.errors import StoreError
from keystrap_lab import pg_cluster
from keystrap_lab.pg_cluster import ClusterError, PrivateCluster


def failing_bin(tmp_path: Path) -> Path:
    """A directory whose ``initdb`` fails the way a real one does: a message, status 1."""
    directory = tmp_path / "bin"
    directory.mkdir()
    initdb = directory / "initdb"
    initdb.write_text("#!/bin/sh\necho 'initdb: could not change directory' >&2\nexit 1\n")
    initdb.chmod(0o755)
    return directory


def test_a_cluster_that_does_not_start_leaves_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_cluster, "postgres_bin", lambda: failing_bin(tmp_path))
    monkeypatch.setattr(pg_cluster, "UNPRIVILEGED", "root")  # the script runs as whoever we are
    parent = tmp_path / "clusters"
    parent.mkdir()
    with pytest.raises(ClusterError, match="initdb failed: initdb: could not change directory"):
        PrivateCluster.create(parent)
    assert os.listdir(parent) == []


def test_a_cluster_error_is_a_store_error() -> None:
    """So ``keystrap demo --store postgresql`` reports it in one line, exit status 2."""
    assert issubclass(ClusterError, StoreError)
