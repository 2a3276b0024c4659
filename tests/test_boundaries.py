"""The layering the package docstring promises, checked on the source itself.

The protocol and wire layers are sans-I/O: if one of their modules imported
the store, CoAP or a media library, the cores could no longer be tested
without sleeping or run anywhere but here. The node core must run unmodified
on MicroPython, so it may import nothing of keystrap at all. Each check reads
every import statement (function-local ones too) with :mod:`ast`, so a lazy
import inside a function cannot slip past.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import keystrap

PACKAGE = Path(keystrap.__file__).parent

# The layers protocol/ and wire/ may build on, besides themselves and the standard
# library: no third-party package at all.
INNER = ("keystrap.crypto", "keystrap.wire")
# Besides those, protocol/ wraps the node core (import-free itself, see below).
PROTOCOL_EXTRA = ("keystrap.nodecore",)


def imports(path: Path, package_dir: Path = PACKAGE) -> list[tuple[str, int]]:
    """Every module ``path`` imports, relative imports resolved: (name, line)."""
    module = ".".join(path.relative_to(package_dir.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return found


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_stdlib(name: str) -> bool:
    return name.partition(".")[0] in sys.stdlib_module_names


def violations(layer: str, allowed: tuple[str, ...], package_dir: Path = PACKAGE) -> list[str]:
    own = f"keystrap.{layer}"
    return [
        f"{path.relative_to(package_dir.parent)}:{line} imports {name}"
        for path in sorted((package_dir / layer).rglob("*.py"))
        for name, line in imports(path, package_dir)
        if not (within(name, (own, *allowed)) or is_stdlib(name))
    ]


def test_wire_imports_only_crypto_and_the_standard_library() -> None:
    assert violations("wire", INNER) == []


def test_protocol_imports_only_crypto_wire_and_the_node_core() -> None:
    assert violations("protocol", (*INNER, *PROTOCOL_EXTRA)) == []


def test_node_core_imports_nothing_of_keystrap() -> None:
    bad = [
        f"{path.name}:{line} imports {name}"
        for path in sorted((PACKAGE / "nodecore").rglob("*.py"))
        for name, line in imports(path)
        if name.startswith("keystrap") and not within(name, ("keystrap.nodecore",))
    ]
    assert bad == []


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The walker finds lazy, relative and aliased imports, so the tests above could fail."""
    layer = tmp_path / "keystrap" / "wire"
    layer.mkdir(parents=True)
    (layer / "probe.py").write_text(
        "import struct\nfrom . import header\nfrom keystrap.crypto import ccm_seal\n"
        "def f():\n    from ..store import sqlite\n    import aiocoap as a\n    return sqlite, a\n"
    )
    assert violations("wire", INNER, tmp_path / "keystrap") == [
        "keystrap/wire/probe.py:5 imports keystrap.store",
        "keystrap/wire/probe.py:6 imports aiocoap",
    ]
