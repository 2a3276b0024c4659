"""Fuzz the node's configuration decoder: only SettingsError may escape."""

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from keystrap.settings import NodeSettings, SettingsError, apply_update, parse_update


def one_input(data: bytes) -> None:
    with contextlib.suppress(SettingsError):
        apply_update(NodeSettings(), parse_update(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
