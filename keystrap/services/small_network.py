"""``keystrap controller --with-server``: the paper's small network.

The paper lets a controller include the server's functions "in case of a small
network" (section 3, step 2; section 4). Here that is a composition of the two
services, no new logic: the server's core runs over its store in the
controller's process, and the controller hands it flights 2, 6 and 9 in memory
instead of over CoAP. Everything else is unchanged: the out-of-band media,
CoAPS to the nodes afterwards, revocation, and the admin commands, which work
on the server's store exactly as with a separate server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from keystrap.coap.server import BootstrapResource
from keystrap.config import ConfigError, ControllerConfig, ServerConfig
from keystrap.hostport import one_socket
from keystrap.ids import eui64, parse_eui64
from keystrap.protocol import Reply
from keystrap.services.controller import KEY_FILE_FROM, ControllerService
from keystrap.services.instance import InstanceLock
from keystrap.services.server import server_core
from keystrap.store.atomic import taken_back_on_failure
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import read_key_file
from keystrap.store.open import local_state
from keystrap.store.postgres_url import redacted
from keystrap.store.sqlite import files_of_new_database

IN_PROCESS = "in-process"
log = logging.getLogger("keystrap.small_network")


class InProcessServer:
    """The controller's way to the server, as :class:`keystrap.coap.client.SbsClient`,
    answered by the server's core in this process: one call, no retransmission."""

    def __init__(self, bootstrap: BootstrapResource) -> None:
        self._bootstrap = bootstrap

    async def post(self, data: bytes, lane: int = 0) -> Reply:
        return await self._bootstrap.answer(data, IN_PROCESS)

    async def shutdown(self) -> None:
        """Nothing to close: the server's core is closed with its store."""


async def run_small_network(
    controller: ControllerConfig, server: ServerConfig, ready: asyncio.Event | None = None
) -> None:
    """Both roles until a signal; the server's store is locked as a server locks it,
    so neither a separate server nor a restore can run on it meanwhile.

    The server's store is opened first, and made if there is none; if the
    controller then cannot start (no key file, its out-of-band endpoint taken...),
    a SQLite store and master key made by this run go again: the start failed, and
    a new empty store left behind would be taken for the site's by the next one.
    A PostgreSQL database is not ours to drop: it keeps what was made in it, a
    check of the master key among them, so the master key stays with it."""
    if controller.state.resolve() == local_state(server).resolve():
        raise ConfigError(
            f"the controller's state {controller.state} is the server's store: "
            "it needs a file of its own (state in [controller], --state)"
        )
    if controller.metrics and server.metrics and one_socket(controller.metrics, server.metrics):
        raise ConfigError(
            f"metrics: the controller's {controller.metrics} and the server's {server.metrics} "
            "are one address, and this process serves both: give one another port, or none "
            "(metrics in [controller] or --metrics; metrics in --server-config's [server])"
        )
    started = ready if ready is not None else asyncio.Event()
    async with contextlib.AsyncExitStack() as held:
        held.callback(InstanceLock.acquire(local_state(server), "server").release)
        made = files_of_new_database(local_state(server))
        if not isinstance(server.database, str):
            made = (server.master_key, *made)
        held.enter_context(
            taken_back_on_failure(*made, started=started.is_set, removed=partial(_gone, server))
        )
        serving = await held.enter_async_context(server_core(server))
        _check_registered(controller, serving.controllers.snapshot(), server)
        bootstrap = BootstrapResource(serving.answer, serving.observe)
        async with bootstrap.reply_log.summaries():
            await ControllerService(controller, InProcessServer(bootstrap)).run(started)


def _gone(server: ServerConfig, removed: list[Path]) -> None:
    """The server's core logged the master key it made; the operator is not left
    believing in a key file that the failed start took back."""
    if server.master_key in removed:
        log.info(
            "the start failed: the wrapping file created above is removed again, "
            "with the store made for it"
        )


def _check_registered(
    controller: ControllerConfig, registered: Mapping[bytes, bytes], server: ServerConfig
) -> None:
    """The server's store must hold this controller under the key it reads. The
    store is at hand here: a controller it does not know, or knows under another
    key (rotated), would run with every flight 2 and revocation query refused
    (4.01) until a restart, its key being read once at the start."""
    name = eui64(parse_eui64(controller.id))
    store = redacted(str(server.database))
    held = registered.get(parse_eui64(controller.id))
    if held is None:
        raise StoreError(
            f"controller {name} is not registered in the server's store {store}: "
            f"`keystrap admin controller add {name} --key-out FILE` registers it"
        )
    key = read_key_file(controller.key_file, where_from=KEY_FILE_FROM)
    if not hmac.compare_digest(key, held):
        raise StoreError(
            f"key file {controller.key_file} is not the key the server's store {store} "
            f"holds for controller {name}; after `keystrap admin controller rotate-key`, "
            "--key-file names the file it wrote"
        )
