"""`asci serve`: the one HTTP service (webhook receiver, launcher API) on loopback.

Components contribute routes through `build_app`; this module owns only the
process lifecycle: bind, serve, and on SIGTERM/SIGINT finish in-flight requests
and exit 0.
"""
from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import time

from aiohttp import web

from asci_core import __version__
from asci_core.components import components
from asci_core.config import Config
from asci_core.errors import AsciError
from asci_core.http_guard import LIMITS_KEY, ConnectionLimits, GuardedRunner
from asci_core.jsonlog import get_logger

log = get_logger("server")
CONFIG_KEY = web.AppKey("config", Config)
STARTED_KEY = web.AppKey("started", float)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({
        "status": "ok",
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - request.app[STARTED_KEY], 3),
    })


class ServeError(AsciError):
    """The service could not start; the message says why."""


def build_app(config: Config) -> web.Application:
    app = web.Application()
    app[CONFIG_KEY] = config
    app[STARTED_KEY] = time.monotonic()
    server = config.server
    app[LIMITS_KEY] = ConnectionLimits(header_timeout=server.header_timeout_seconds,
                                       idle_timeout=server.idle_timeout_seconds, max_connections=server.max_connections)
    app.router.add_get("/healthz", healthz)
    for component in components():  # asci_core.components: each adds its own routes
        if component.routes is not None:
            component.routes(app, config)
    return app


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """HOST:PORT bound, one socket per address it resolves to, as asyncio's create_server binds them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    made: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in made:
            sock.close()
        raise
    return made


async def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    host = host or config.server.host
    port = port if port is not None else config.server.port
    # The port first: when it is taken the command ends before any component acts (the web
    # page's first-run user and its printed password, the launcher's reconciliation).
    try:
        sockets = listening_sockets(host, port)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Components see the address actually served (the first-run message names the page's URL).
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, host=host, port=port))
    try:
        runner = GuardedRunner(build_app(config), access_log=None,
                               shutdown_timeout=config.server.shutdown_timeout)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    try:
        await runner.setup()
        for sock in sockets:
            await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        for sock in sockets:
            sock.close()
        raise
    log.info("listening", address=f"http://{host}:{port}", version=__version__, config=config.source)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():  # a second signal (e.g. to the whole process group) changes nothing
            log.info("stopping", signal=sig.name)
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    await runner.cleanup()
    log.info("stopped")
