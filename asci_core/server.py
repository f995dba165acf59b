"""`asci serve`: the one HTTP service (webhook receiver, launcher API) on loopback.

Components contribute routes through `build_app`; this module owns only the
process lifecycle: bind, serve, and on SIGTERM/SIGINT finish in-flight requests
and exit 0.
"""
from __future__ import annotations

import asyncio
import signal
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


async def serve(config: Config, host: str | None = None, port: int | None = None) -> None:
    host = host or config.server.host
    port = port if port is not None else config.server.port
    runner = GuardedRunner(build_app(config), access_log=None,
                           shutdown_timeout=config.server.shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
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
