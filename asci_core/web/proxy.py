"""The viewer's WebSocket, relayed to the session's VNC server.

The upgrade needs three things at once: the login cookie, an Origin equal to the
served origin, and a connect token (in the Sec-WebSocket-Protocol header as
`asci-token.TOKEN`, so it is in no URL, history or access log) issued to that
same user for that same session, unused and unexpired, for a session still
ready. Anything else is 403 and a log line without the token.

The proxy authenticates to Xvnc itself with the one-time password the token
carries (rfb.py) and offers the browser security type None.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable

from aiohttp import WSMsgType, web

from asci_core.jsonlog import get_logger
from asci_core.launcher.errors import LauncherError
from asci_core.launcher.store import READY

from .app import SESSION_ID, client_address, current_login, origin_ok, state_of
from .desktop_link import DesktopLink
from .rfb import BrowserSide, HandshakeFailed, authenticate_upstream
from .state import Activity, WebState
from .tokens import TokenRefused

log = get_logger("web")
TOKEN_PREFIX = "asci-token."
CONNECT_TIMEOUT = 10.0
TOUCH_INTERVAL = 30.0
REFUSED_RETRY = 0.02
MESSAGE_SIZE = 64 * 1024
BROWSER_WRITE_BUFFER = 1024 * 1024  # per viewer, besides DesktopLink's queue (256 KiB and one read)


async def open_upstream(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> DesktopLink:
    """The session's VNC port. A session is ready once its container runs, and its Xvnc needs a
    moment more to listen: a refused connection is tried again until TIMEOUT, so the first Connect
    after Start reaches the desktop instead of failing and waiting for the viewer's back-off."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, link = await asyncio.wait_for(loop.create_connection(DesktopLink, address, port),
                                             max(0.01, deadline - loop.time()))
            return link
        except ConnectionRefusedError:
            if loop.time() + REFUSED_RETRY >= deadline:
                raise
            await asyncio.sleep(REFUSED_RETRY)


def offered_token(request: web.Request) -> tuple[str | None, str | None]:
    """(the token, the sub-protocol string to echo back)."""
    for item in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        item = item.strip()
        if item.startswith(TOKEN_PREFIX):
            return item[len(TOKEN_PREFIX):], item
    return None, None


def refuse(request: web.Request, reason: str, user: str | None, session: str, status: int = 403) -> web.Response:
    log.warning("viewer refused", reason=reason, user=user or "", session=session, client=client_address(request))
    return web.json_response({"error": "viewer connection refused"}, status=status)


async def proxy(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    session = request.match_info["session"]
    login = current_login(request)
    token, protocol = offered_token(request)
    # Browsers always send Origin on a WebSocket upgrade: one without it is not a browser page of ours.
    origin_fits = "Origin" in request.headers and origin_ok(request)
    if not SESSION_ID.fullmatch(session) or login is None or not origin_fits:
        state.tokens.discard(token)  # whoever holds a token gets one try, whatever fails
    if not SESSION_ID.fullmatch(session):
        return refuse(request, "not a session id", login.user.name if login else None, session[:32])
    if login is None:
        return refuse(request, "not logged in", None, session)
    user = login.user.name
    if not origin_fits:
        return refuse(request, f"origin {request.headers.get('Origin', '')[:100]!r} not served here", user, session)
    try:
        grant = state.tokens.take(token, user, session)
    except TokenRefused as exc:
        return refuse(request, str(exc), user, session)
    try:
        record = await state.blocking(state.launcher.show, session, user)
    except LauncherError as exc:
        return refuse(request, str(exc), user, session)
    if record.state != READY:
        return refuse(request, f"session is {record.state}", user, session)
    if state.viewers.get(user, 0) >= state.settings.max_viewers_per_user:
        return refuse(request, "too many open viewers", user, session, status=429)

    connection = grant.connection
    try:
        link = await open_upstream(connection.address, connection.port)
    except (OSError, asyncio.TimeoutError) as exc:
        log.error("session VNC not reachable", session=session, user=user, reason=str(exc) or type(exc).__name__)
        return web.json_response({"error": "the desktop is not answering"}, status=502)
    try:
        await asyncio.wait_for(authenticate_upstream(link, link, connection.password.reveal()), CONNECT_TIMEOUT)
    except (HandshakeFailed, OSError, asyncio.TimeoutError) as exc:
        link.close()
        log.error("session VNC handshake failed", session=session, user=user, reason=str(exc) or type(exc).__name__)
        return web.json_response({"error": "the desktop refused the connection"}, status=502)

    ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=state.settings.max_message_bytes,
                               heartbeat=30.0, compress=False)
    await ws.prepare(request)
    if request.transport is not None:
        # With the default 64 KiB mark every 256 KiB update paused the relay until the socket had
        # drained to 16 KiB, leaving it idle in between; 1 MiB keeps it fed (bench/web_proxy.py).
        request.transport.set_write_buffer_limits(high=BROWSER_WRITE_BUFFER)
    cork = corking(request)
    state.viewers[user] = state.viewers.get(user, 0) + 1
    activity = state.activity.setdefault(session, Activity())
    log.info("viewer connected", session=session, user=user, client=client_address(request))
    try:
        await _relay(state, ws, link, session, activity, cork)
    finally:
        link.close()
        state.viewers[user] -= 1
        if state.viewers[user] <= 0:
            del state.viewers[user]
        await ws.close()
        log.info("viewer disconnected", session=session, user=user, bytes_in=activity.bytes_in,
                 bytes_out=activity.bytes_out)
    return ws


def corking(request: web.Request) -> Callable[[bool], None] | None:
    """Hold partial TCP segments back (TCP_CORK) while a message goes out, None where that is not possible.

    aiohttp writes a large message's frame header and its payload separately (no copy), and with
    TCP_NODELAY the 10-byte header leaves as a packet of its own: the browser wakes up for it, then
    again for the payload. Corked, the two leave together; uncorking sends the rest at once."""
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is None or not hasattr(socket, "TCP_CORK"):
        return None

    def cork(on: bool) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
        except OSError:
            pass  # the connection is closing: nothing left to hold back

    return cork


async def _relay(state: WebState, ws: web.WebSocketResponse, link: DesktopLink, session: str,
                 activity: Activity, cork: Callable[[bool], None] | None = None) -> None:
    handshake = BrowserSide()
    await ws.send_bytes(handshake.greeting())

    async def from_browser() -> None:
        done = False
        while True:
            msg = await ws.receive(timeout=state.settings.viewer_idle_timeout)
            if msg.type != WSMsgType.BINARY:
                return  # close, error, or text (noVNC sends binary only)
            data = msg.data
            activity.bytes_in += len(data)
            activity.last_input = time.time()
            if not done:
                reply, data, done = handshake.feed(data)
                if reply:
                    await ws.send_bytes(reply)
            if data:
                if link.is_closing():
                    return  # the desktop went away (its session is stopping) while the browser typed
                link.write(data)
                await link.drain()

    async def from_desktop() -> None:
        # Messages of at most 64 KiB, as websockify sends them: slices of a read's view, no copy.
        while chunks := await link.chunks():
            if cork is not None:
                cork(True)
            try:
                for data in chunks:
                    activity.bytes_out += len(data)
                    for offset in range(0, len(data), MESSAGE_SIZE):
                        await ws.send_bytes(data[offset:offset + MESSAGE_SIZE])
            finally:
                if cork is not None:
                    cork(False)

    async def report() -> None:
        while True:
            try:
                await state.blocking(state.launcher.touch, session)
            except LauncherError:
                return
            await asyncio.sleep(TOUCH_INTERVAL)

    tasks = [asyncio.create_task(t) for t in (from_browser(), from_desktop(), report())]
    try:
        done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if isinstance(exc, asyncio.TimeoutError):
                log.info("viewer closed after idle timeout", session=session)
            elif isinstance(exc, HandshakeFailed):
                log.warning("viewer handshake refused", session=session, reason=str(exc))
            elif exc is not None and not isinstance(exc, (ConnectionError, OSError)):
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
