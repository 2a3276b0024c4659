"""The deployable processes: asyncio wrappers that feed the sans-I/O machines
with real sockets, clocks, randomness and storage."""
