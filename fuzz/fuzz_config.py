"""Fuzz the configuration loader, node state files and installer bundles."""

import contextlib
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from keystrap.config import ConfigError, ControllerConfig, ServerConfig, load_config
    from keystrap.enrolment import install_bundle
    from keystrap.store.errors import StoreError
    from keystrap.store.node_file import load_node_file

WORK = Path(tempfile.mkdtemp(prefix="keystrap-fuzz-"))


def one_input(data: bytes) -> None:
    path = WORK / "input"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(ServerConfig, path, {})
    with contextlib.suppress(ConfigError):
        load_config(ControllerConfig, path, {})
    with contextlib.suppress(StoreError):
        load_node_file(path)
    with contextlib.suppress(StoreError):
        install_bundle(path, WORK / "out")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
