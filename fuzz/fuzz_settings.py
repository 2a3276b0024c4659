"""Fuzz the node's configuration decoder: only SettingsError may escape."""

import sys

import atheris

with atheris.instrument_imports():
    from keystrap.settings import NodeSettings, SettingsError, apply_update, parse_update


def one_input(data: bytes) -> None:
    try:
        apply_update(NodeSettings(), parse_update(data))
    except SettingsError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
