"""The console's ASGI application (Starlette): one handler per page or form.

Every route but ``/login`` requires a session; every POST requires the session's
CSRF token besides its SameSite=Strict cookie. The handlers are coroutines; what
they ask of the store runs on one of two threads of :class:`ConsoleStore`, never
on the event loop: a write waits up to SQLite's busy timeout (10 s) while another
process holds the store's write lock, and on the loop that wait stalled every
request of every user, the live feed's included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import FormData, Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keystrap.cli.arg_types import within
from keystrap.config import RANGES
from keystrap.console import history, queries
from keystrap.console.sessions import SESSION_SECONDS, Session, Sessions
from keystrap.console.users import Users, password_matches
from keystrap.enrolment import (
    Order,
    bundle_bytes,
    create_order,
    ids_from_count,
    ids_from_range,
)
from keystrap.ids import eui64, parse_eui64
from keystrap.order_options import KEY_MODES
from keystrap.shown import printable
from keystrap.store.atomic import new_output
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import key_file_bytes
from keystrap.store.records import UnfinishedBootstraps
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository

HERE = Path(__file__).parent
COOKIE = "keystrap_session"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LIVE_POLL = 0.5  # seconds between reads of the bootstrap log for the live view
MAX_SQLITE = 2**63 - 1  # SQLite's largest INTEGER
MAX_BODY = 64 * 1024  # bytes of a request's body; the largest form is well under 5 KiB

Handler = Callable[[Request, Session], Awaitable[Response]]
T = TypeVar("T")


@dataclass
class ConsoleStore:
    """What the console acts on: the server's repository (writes, through the same
    functions as ``keystrap admin``), read connections, the accounts.

    Two threads, one for writes (:attr:`repository`) and one for reads
    (:attr:`db`, :attr:`reader`, :attr:`users`), each the only user of its
    connections: a read never queues behind a write that waits for the lock
    (in WAL mode a reader does not wait for a writer)."""

    repository: SqliteRepository
    users: Users
    window: int
    secure_cookie: bool

    def __post_init__(self) -> None:
        self.db = queries.open_store(self.repository.path)
        try:
            self.reader = self.repository.reader()
        except BaseException:
            self.db.close()
            raise
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="console-reads")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="console-writes")

    async def read(self, function: Callable[[], T]) -> T:
        """``function()`` on the read thread: it may use :attr:`db`, :attr:`reader`
        and :attr:`users`, nothing else of the store."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, function)

    async def write(self, function: Callable[[], T]) -> T:
        """``function()`` on the write thread: it may use :attr:`repository` only."""
        return await asyncio.get_running_loop().run_in_executor(self._writes, function)

    def close(self) -> None:
        self._reads.shutdown()
        self._writes.shutdown()
        self.db.close()
        self.reader.close()
        self.users.close()
        self.repository.close()


def build_app(store: ConsoleStore) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["eui64"] = eui64
    templates.env.filters["when"] = lambda t: (
        "never" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    )
    sessions = Sessions()

    def render(
        request: Request, session: Session | None, name: str, status: int = 200, **context: Any
    ) -> Response:
        context.update(request=request, session=session)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(HEADERS)
        return response

    def back(path: str) -> Response:
        response = RedirectResponse(path, status_code=303)
        response.headers.update(HEADERS)
        return response

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = sessions.get(request.cookies.get(COOKIE), time.time())
            if session is None:
                if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                    return back("/login")
                return PlainTextResponse("login required", 401, headers=HEADERS)
            if request.method == "POST":
                form = await request.form()
                sent = form.get("csrf")
                if not Sessions.csrf_ok(session, sent if isinstance(sent, str) else None):
                    return PlainTextResponse("missing or wrong CSRF token", 403, headers=HEADERS)
            try:
                return await handler(request, session)
            except (StoreError, ValueError) as exc:
                return render(request, session, "error.html", 400, message=str(exc))
            except sqlite3.DatabaseError as exc:
                # The store's state, not the request's fault: another writer held it
                # past the busy timeout, the disk is full... and the change was undone.
                message = f"the store could not be used ({exc}); nothing was changed: try again"
                return render(request, session, "error.html", 503, message=message)

        return endpoint

    # -- login ---------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        return render(request, None, "login.html")

    async def login(request: Request) -> Response:
        now = time.time()
        client = request.client.host if request.client else "?"
        if not sessions.login_attempt(client, now):
            return render(
                request, None, "login.html", 429, error="too many failed logins; wait a minute"
            )
        form = await request.form()
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        stored = await store.read(lambda: store.users.password_of(name))
        if not await asyncio.to_thread(password_matches, password, stored):
            return render(request, None, "login.html", 401, error="wrong user name or password")
        sessions.login_succeeded(client, now)
        response = back("/")
        response.set_cookie(
            COOKIE,
            sessions.open(name, now),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=store.secure_cookie,
        )
        return response

    async def logout(request: Request, session: Session) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = back("/login")
        response.delete_cookie(COOKIE)
        return response

    # -- pages ---------------------------------------------------------------------

    async def dashboard(request: Request, session: Session) -> Response:
        board, controllers = await store.read(
            lambda: (
                queries.dashboard(store.db, time.time(), store.window),
                store.reader.list_controllers(),
            )
        )
        peak = max((count for _, count in board.per_minute), default=0)
        return render(
            request,
            session,
            "dashboard.html",
            board=board,
            peak=max(peak, 1),
            controllers=controllers,
            plain=history.PLAIN,
        )

    async def nodes(request: Request, session: Session) -> Response:
        args = request.query_params
        order = args.get("order", "")
        controller = args.get("controller", "")
        where = queries.NodeFilter(
            search=args.get("q", ""),
            state=args.get("state", ""),
            order=order_number(order) if order.isdigit() else None,
            installer=args.get("installer", ""),
            controller=parse_eui64(controller) if controller else None,
        )
        after = args.get("after", "")
        start = bytes.fromhex(after) if after else b""
        rows, orders, installers, controllers = await store.read(
            lambda: (
                queries.page_nodes(store.db, where, start),
                queries.order_choices(store.db),
                store.reader.list_installers(),
                store.reader.list_controllers(),
            )
        )
        following = (
            dict(args) | {"after": rows[-1].node_id.hex()} if len(rows) == queries.PAGE else None
        )
        return render(
            request,
            session,
            "nodes.html",
            rows=rows,
            args=args,
            following=following,
            states=queries.STATES,
            orders=orders,
            installers=installers,
            controllers=controllers,
        )

    async def node(request: Request, session: Session) -> Response:
        node_id = parse_eui64(request.path_params["eui"])
        row, entries, granted = await store.read(
            lambda: (
                queries.node_summary(store.db, node_id),
                queries.node_log(store.db, node_id),
                queries.node_transactions(store.db, node_id),
            )
        )
        if row is None:
            return render(request, session, "error.html", 404, message="no such node")
        log = [(e.at, e.controller_id, e.tid, e.flight, e.outcome, e.cause) for e in entries]
        tries = history.attempts(log, granted, time.time(), store.window)
        confirm = request.query_params.get("confirm") == "revoke"
        return render(request, session, "node.html", node=row, attempts=tries, confirm=confirm)

    async def revoke(request: Request, session: Session) -> Response:
        eui = request.path_params["eui"]
        form = await request.form()
        if form.get("confirmed") != "yes":
            return back(f"/nodes/{eui}?confirm=revoke")
        node_id = parse_eui64(eui)
        await store.write(lambda: store.repository.revoke(node_id))
        return back(f"/nodes/{eui}")

    async def orders(request: Request, session: Session) -> Response:
        orders, installers, controllers = await store.read(
            lambda: (
                store.reader.list_orders(),
                store.reader.list_installers(),
                store.reader.list_controllers(),
            )
        )
        return render(
            request,
            session,
            "orders.html",
            orders=orders,
            installers=installers,
            controllers=controllers,
            key_modes=KEY_MODES,
            download=request.query_params.get("download"),
        )

    async def order_create(request: Request, session: Session) -> Response:
        form = await request.form()
        installer = text(form, "installer")
        if not installer:
            raise ValueError("name the installer")
        id_range = text(form, "range")
        count = text(form, "count")
        node_ids = ids_from_range(id_range) if id_range else ids_from_count(int(count or "0"))
        return await order_with_bundle(
            session, installer, parse_eui64(text(form, "controller")), node_ids, form
        )

    async def order_with_bundle(
        session: Session,
        installer: str,
        controller_id: bytes,
        node_ids: list[bytes],
        form: FormData,
        re_enrol: bool = False,
    ) -> Response:
        bundles: list[tuple[str, bytes]] = []

        def keep(order: Order) -> None:
            """The bundle is made before the order commits, as the CLI writes its file;
            it is offered once the order is committed, on the loop (the sessions are
            the loop's alone)."""
            bundles.append((f"order-{order.order_id}-bundle.json", bundle_bytes(order)))

        key_mode = text(form, "key_mode") or "shared"
        oob = text(form, "oob") or "unix:keystrap-data/oob.sock"
        await store.write(
            lambda: create_order(
                store.repository,
                installer,
                controller_id,
                node_ids,
                key_mode=key_mode,
                oob=oob,
                re_enrol=re_enrol,
                publish=keep,
            )
        )
        filename, data = bundles[-1]
        token = sessions.offer(session.user, filename, data, time.time())
        return back(f"/orders?download={token}")

    async def re_enrol(request: Request, session: Session) -> Response:
        """A revoked (e.g. factory-reset) node enrolled again on purpose: a new order
        of that one node with a fresh initial key, its bundle offered once."""
        node_id = parse_eui64(request.path_params["eui"])
        row = await store.read(lambda: queries.node_summary(store.db, node_id))
        if row is None:
            raise ValueError("no such node")
        form = await request.form()
        installer = text(form, "installer") or row.installer
        return await order_with_bundle(
            session, installer, row.controller_id, [row.node_id], form, re_enrol=True
        )

    async def bundle(request: Request, session: Session) -> Response:
        # A HEAD (a link checker, curl -I) gets no body: taking the bundle for it
        # lost the order's keys for good, the next GET answering 410.
        find = sessions.offered if request.method == "HEAD" else sessions.take
        download = find(session.user, request.path_params["token"], time.time())
        if download is None:
            return render(
                request,
                session,
                "error.html",
                410,
                message="this bundle was already downloaded, or has expired: it is never "
                "shown twice",
            )
        return Response(
            download.data,
            media_type="application/json",
            headers=HEADERS
            | {"Content-Disposition": f'attachment; filename="{download.filename}"'},
        )

    async def order_remove(request: Request, session: Session) -> Response:
        order_id = order_number(request.path_params["order"])
        await store.write(lambda: store.repository.remove_order(order_id))
        return back("/orders")

    async def installer_remove(request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        await store.write(lambda: store.repository.remove_installer(name))
        return back("/orders")

    async def controllers(request: Request, session: Session) -> Response:
        listed = await store.read(store.reader.list_controllers)
        return render(request, session, "controllers.html", controllers=listed)

    async def controller_add(request: Request, session: Session) -> Response:
        form = await request.form()
        key_out = new_key_file(form)
        info = ControllerInfo(
            parse_eui64(text(form, "id")),
            text(form, "name"),
            text(form, "host") or "127.0.0.1",
            port_number(text(form, "port") or "5684"),
        )
        sk_cs = secrets.token_bytes(16)

        def add() -> None:
            # As admin controller add: a key file whose store change failed is removed.
            with new_output(key_out, force=False) as output:
                store.repository.add_controller(info, sk_cs, lambda: output(key_file_bytes(sk_cs)))

        await store.write(add)
        return back("/controllers")

    async def controller_rotate(request: Request, session: Session) -> Response:
        """A new ``SK_cs``, under the rules of ``admin controller rotate-key`` without
        its --force (declaring bootstraps abandoned is left to the command line)."""
        controller_id = parse_eui64(request.path_params["eui"])
        form = await request.form()
        key_out = new_key_file(form)
        sk_cs = secrets.token_bytes(16)

        def rotate() -> None:
            with new_output(key_out, force=False) as output:
                store.repository.rotate_controller_key(
                    controller_id, sk_cs, lambda: output(key_file_bytes(sk_cs))
                )

        try:
            await store.write(rotate)
        except UnfinishedBootstraps as exc:
            raise StoreError(f"{exc}; let them finish first") from None
        return back("/controllers")

    async def controller_remove(request: Request, session: Session) -> Response:
        controller_id = parse_eui64(request.path_params["eui"])
        await store.write(lambda: store.repository.remove_controller(controller_id))
        return back("/controllers")

    async def live(request: Request, session: Session) -> Response:
        return render(request, session, "live.html")

    async def live_events(request: Request, session: Session) -> Response:
        async def stream() -> AsyncIterator[str]:
            # A reconnecting EventSource says where it stopped; a new one starts now.
            resumed = sqlite_integer(request.headers.get("last-event-id", ""))
            seq = (
                await store.read(lambda: queries.last_seq(store.db)) if resumed is None else resumed
            )
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                for row in await store.read(partial(queries.log_after, store.db, seq)):
                    seq = row.seq
                    event = {
                        "seq": row.seq,
                        "at": row.at,
                        "node": eui64(row.node_id),
                        "controller": eui64(row.controller_id),
                        "tid": row.tid,
                        "flight": row.flight,
                        "outcome": row.outcome,
                        "cause": history.plain(row.flight, row.cause) if row.cause else "",
                    }
                    yield f"id: {row.seq}\ndata: {json.dumps(event)}\n\n"
                await asyncio.sleep(LIVE_POLL)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers=HEADERS | {"X-Accel-Buffering": "no"}
        )

    async def script(request: Request, session: Session) -> Response:
        return Response(
            (HERE / "static" / "live.js").read_bytes(),
            media_type="text/javascript",
            headers=HEADERS,
        )

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", guarded(logout), methods=["POST"]),
        Route("/", guarded(dashboard)),
        Route("/nodes", guarded(nodes)),
        Route("/nodes/{eui}", guarded(node)),
        Route("/nodes/{eui}/revoke", guarded(revoke), methods=["POST"]),
        Route("/nodes/{eui}/re-enrol", guarded(re_enrol), methods=["POST"]),
        Route("/orders", guarded(orders)),
        Route("/orders", guarded(order_create), methods=["POST"]),
        Route("/orders/{order}/remove", guarded(order_remove), methods=["POST"]),
        Route("/bundles/{token}", guarded(bundle)),
        Route("/installers/{name}/remove", guarded(installer_remove), methods=["POST"]),
        Route("/controllers", guarded(controllers)),
        Route("/controllers", guarded(controller_add), methods=["POST"]),
        Route("/controllers/{eui}/remove", guarded(controller_remove), methods=["POST"]),
        Route("/controllers/{eui}/rotate", guarded(controller_rotate), methods=["POST"]),
        Route("/live", guarded(live)),
        Route("/live/events", guarded(live_events)),
        Route("/static/live.js", guarded(script)),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecureHeaders), Middleware(BoundedBody, limit=MAX_BODY)],
        exception_handlers={Exception: internal_error},
    )


class SecureHeaders:
    """Every answer with :data:`HEADERS`: the handlers set them, but what Starlette
    answers itself did not have them (a 404, a 405, the 400 of a form it cannot
    parse, :class:`BoundedBody`'s 413 for a body sent without a length), so such
    a page could be framed, sniffed as another type, or kept in a cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, secured)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A handler's bug, answered outside :class:`SecureHeaders` (Starlette's
    outermost layer sends it): its 500 carries the headers itself."""
    return PlainTextResponse("Internal Server Error", 500, headers=HEADERS)


class BoundedBody:
    """Refuses a request body over ``limit`` bytes with 413, before or while it
    arrives. Starlette's form parser would keep 1,000 fields of 1 MiB each in
    memory and spool file parts of any size to disk, and ``/login`` reads its
    form before anyone has logged in: one request could take a gigabyte.

    A client that hangs up before its body is whole gets no answer (there is no
    one to read it); Starlette's ClientDisconnect was a traceback on stderr."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await PlainTextResponse(
                "request body too large", 413, headers=HEADERS | {"Connection": "close"}
            )(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            """``receive``, counting: a chunked body declares no length."""
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, "request body too large")
            return message

        with contextlib.suppress(ClientDisconnect):
            await self.app(scope, bounded, send)


def new_key_file(form: FormData) -> Path:
    """The form's ``key_out``, a file that does not exist yet. Whether it does
    is the file system's to say, and a name too long or a directory that may not
    be searched is an OSError there: it was a 500."""
    name = text(form, "key_out")
    try:
        taken = not name or Path(name).exists()
    except OSError as exc:
        raise ValueError(f"key_out {name}: {exc.strerror or exc}") from None
    if taken:
        raise ValueError("name a new file for the controller's key (an existing one is kept)")
    return Path(name)


def sqlite_integer(value: str) -> int | None:
    """``value`` if it is ASCII digits of a number SQLite's INTEGER holds, else
    None. ``str.isdigit`` alone takes "²", which int() refuses, and int() alone
    takes numbers that overflow SQLite or have over 4,300 digits."""
    if value.isascii() and value.isdigit() and len(value) <= len(str(MAX_SQLITE)):
        number = int(value)
        return number if number <= MAX_SQLITE else None
    return None


def order_number(value: str) -> int:
    """An order's number within what ``admin order remove`` takes (and SQLite's
    INTEGER holds). Past it, SQLite's OverflowError (and int()'s own refusal of
    over 4,300 digits, in routing) ended the request in a 500."""
    number = sqlite_integer(value)
    if number is None or number < 1:
        raise ValueError(f"an order number is from 1 to {MAX_SQLITE}")
    return number


def port_number(value: str) -> int:
    """The port of ``admin controller add --port``, within the same bounds: the
    store takes any integer, and a port of 0 or 99999999 registered a
    controller that the nodes of its orders are told to reach there."""
    return within(value, *RANGES["port"], "a port")


def text(form: FormData, name: str) -> str:
    """A form field, refused if it holds a control character (a name stored with
    one could fake rows of ``keystrap admin controller list``)."""
    value = form.get(name, "")
    return printable(name, value.strip()) if isinstance(value, str) else ""
