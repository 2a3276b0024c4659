"""Helpers for tests that run the real server and controller processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiocoap

from keystrap.services.node_agent import NodeResult, bootstrap_node
from keystrap.store.node_file import load_node_file
from keystrap_lab.site import Site

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def bootstrap_all(
    nodes: list[Path], timeout: float = 60, linger: float = 15
) -> list[NodeResult]:
    return list(
        await asyncio.gather(*(bootstrap_node(p, timeout=timeout, linger=linger) for p in nodes))
    )


def server_keys(site: Site) -> dict[bytes, bytes]:
    return site.server_keys()


def pending_candidates(site: Site) -> int:
    return site.pending_candidates()


def shared_ik(site: Site, name: str = "nodes") -> bytes:
    bundle = json.loads((site.root / f"{name}-bundle.json").read_text())
    return bytes.fromhex(bundle["shared_key"])


def assert_all_rekeyed(site: Site, nodes: list[Path], ik: bytes) -> None:
    """Every node file and the server hold the same fresh key; IK is nowhere."""
    keys = server_keys(site)
    for path in nodes:
        state = load_node_file(path).state
        assert keys[state.node_id] == state.key, f"{path.name}: node and server disagree"
        assert state.key != ik
    assert ik not in keys.values()
    assert pending_candidates(site) == 0


async def post(
    site: Site,
    payload: bytes,
    *,
    method: Any = None,
    content_format: int | None = 42,
    path: str = "bs",
) -> aiocoap.Message:
    context = await aiocoap.Context.create_client_context()
    try:
        message = aiocoap.Message(
            code=method or aiocoap.POST,
            payload=payload,
            uri=f"coap://127.0.0.1:{site.server_port}/{path}",
        )
        if content_format is not None:
            message.opt.content_format = content_format
        return await asyncio.wait_for(context.request(message).response, 10)
    finally:
        await context.shutdown()
