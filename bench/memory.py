"""Memory and code size on the node's side, next to RFC 7228's device classes.

- Peak resident memory (ru_maxrss) of a real ``keystrap node`` process during a
  bootstrap against real SBS and SBR processes, and of the same interpreter
  only importing the agent, so the bootstrap's own share shows.
- The single-primitive node core (``keystrap.nodecore``): source lines and
  bytes, bytecode bytes, and the Python heap it allocates for one bootstrap
  (tracemalloc), plus the bytes of state a node must keep.

    python bench/memory.py

Prints a table, then one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import marshal
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import keystrap.nodecore
from keystrap.crypto import aes_encrypt_block
from keystrap.nodecore import CountingBlock, MinimalNode
from keystrap_lab.site import Site
from keystrap_lab.vectors import VectorInputs, run_vector

# RFC 7228, Table 1 (orders of magnitude, KiB): data size (RAM), code size (flash).
RFC7228 = {"class 0": (10, 100), "class 1": (10, 100), "class 2": (50, 250)}
# What a node keeps across a bootstrap: ID_i, ID_c, key (IK or PSK_i), RN_i, TID,
# SK_i, and the flight 5 it may have to repeat.
NODE_STATE_BYTES = 8 + 8 + 16 + 16 + 4 + 16 + 29


# Runs a module or nothing, then reports its own high-water RSS. (wait4's
# ru_maxrss would not do: Linux carries the parent's RSS at fork into it.)
HWM = (
    "import atexit, runpy, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('HWM ' + line.split()[1] + '\\n')\n"
    "atexit.register(hwm)\n"
    "if len(sys.argv) > 1:\n"
    "    sys.argv = sys.argv[1:]\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__')\n"
)


def peak_rss_kib(module_args: list[str], cwd: Path) -> tuple[int, int]:
    """(exit status, peak RSS in KiB) of ``python -m MODULE ARGS`` (or of nothing)."""
    done = subprocess.run(
        [sys.executable, "-c", HWM, *module_args], cwd=cwd, capture_output=True, text=True
    )
    peaks = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("HWM ")]
    if not peaks:
        raise RuntimeError(f"no RSS reported:\n{done.stderr}")
    return done.returncode, peaks[-1]


async def node_agent_rss(root: Path) -> dict[str, int]:
    site = Site(root, channels=("raw", "raw"), revocation_poll=3600)
    await site.prepare()
    site.register_controller()
    (path,) = site.enrol(1)
    await site.start()
    try:
        status, bootstrap = peak_rss_kib(["keystrap.cli.main", "node", str(path)], root)
        if status != 0:
            raise RuntimeError("the node agent did not bootstrap")
    finally:
        site.stop()
    _, imports = peak_rss_kib(["keystrap.services.node_agent"], root)
    _, bare = peak_rss_kib([], root)
    return {"bootstrap_kib": bootstrap, "imports_only_kib": imports, "bare_python_kib": bare}


def node_core_size() -> dict[str, int]:
    folder = Path(keystrap.nodecore.__file__).parent
    sources = sorted(folder.glob("*.py"))
    text = [p.read_text() for p in sources]
    pairs = zip(sources, text, strict=True)
    code = sum(len(marshal.dumps(compile(t, str(p), "exec"))) for p, t in pairs)
    return {
        "files": len(sources),
        "lines": sum(t.count("\n") for t in text),
        "source_bytes": sum(len(t.encode()) for t in text),
        "bytecode_bytes": code,
    }


def node_core_heap() -> dict[str, int]:
    inputs = VectorInputs(
        bytes(16), bytes(range(16)), bytes(8), b"\1" * 8,
        bytes(range(16)), bytes(range(16, 32)), 1, 1_800_000_000,
    )  # fmt: skip
    flights = run_vector(inputs)["flights"]
    assert isinstance(flights, dict)
    flight4 = bytes.fromhex(flights["4"])
    tracemalloc.start()
    block = CountingBlock(aes_encrypt_block)
    node = MinimalNode(inputs.node_id, inputs.controller_id, inputs.ik, block)
    node.hello(inputs.rn_i)
    node.answer(flight4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"python_heap_peak_bytes": peak, "aes_block_calls": block.calls}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="keystrap-memory-") as tmp:
        rss = asyncio.run(node_agent_rss(Path(tmp)))
    size = node_core_size()
    heap = node_core_heap()
    print("Node agent process (CPython 3.11, real bootstrap through SBS and SBR processes)")
    print(f"  peak RSS during a bootstrap      {rss['bootstrap_kib']:>8} KiB")
    print(f"  same interpreter, imports only   {rss['imports_only_kib']:>8} KiB")
    print(f"  bare interpreter                 {rss['bare_python_kib']:>8} KiB")
    print("Single-primitive node core (keystrap.nodecore: CCM, CMAC, the node's flights)")
    print(
        f"  {size['files']} files, {size['lines']} lines, {size['source_bytes']} B source, "
        f"{size['bytecode_bytes']} B bytecode"
    )
    print(
        f"  Python heap for one bootstrap    {heap['python_heap_peak_bytes']:>8} B "
        f"({heap['aes_block_calls']} AES block calls)"
    )
    print(f"  state a node keeps               {NODE_STATE_BYTES:>8} B")
    print(
        "RFC 7228 classes for orientation (data / code, KiB): "
        + ", ".join(f"{k} ~{d} / ~{c}" for k, (d, c) in RFC7228.items())
        + " (class 0 is well below these)"
    )
    result: dict[str, Any] = {
        "bench": "memory",
        "node_agent": rss,
        "node_core": {**size, **heap, "state_bytes": NODE_STATE_BYTES},
        "rfc7228_kib": RFC7228,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
