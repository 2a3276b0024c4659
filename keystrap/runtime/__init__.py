"""Other runtimes for the node core: MicroPython (WebAssembly port, under Node.js)."""

from keystrap.runtime.micropython import MicroPython, RuntimeUnavailable

__all__ = ["MicroPython", "RuntimeUnavailable"]
