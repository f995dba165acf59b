"""The services under `asci serve`: reconcile at start, then roll on autobuild's events and registry checks.

Rolls run in worker threads (they wait on containers); one service rolls once at a time (the
deployer's lock). Reconcile at start undoes a roll cut short by a restart, so exactly one version
runs before new tags are considered. The engine's exit feed (the launcher's ContainerEventFollower,
here with its own callback) reports a serving version that crashed: the engine's restart policy
brings it back, or the deployer restores it, and the front forwards to it again (Services.restore);
each check period also repairs what `asci services status` flags (Services.repair).
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from asci_core.errors import AsciError
from asci_core.events import build_succeeded_listeners
from asci_core.jsonlog import get_logger

from asci_core.launcher.container_events import ContainerEventFollower, ContainerExit

from .containers import SERVICE_LABEL
from .deployer import Services

log = get_logger("services")
SERVICES_KEY = web.AppKey("services", Services)


def setup(app: web.Application, config: Any) -> None:
    if not config.services.definitions:
        return
    services = Services(config)
    app[SERVICES_KEY] = services
    tasks: set[asyncio.Task] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def in_thread(what: str, fn: Any, *args: Any) -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except AsciError as exc:
            log.error(f"services: {what} failed", error=exc.one_line())
        except Exception as exc:  # a roll's bug must not stop the server or the next check
            log.error(f"services: {what} failed", exc_info=exc)

    def on_build_succeeded(build: Any, image: str, digest: str) -> None:
        spawn(in_thread("roll after a build", services.built, image, build.tag))

    # autobuild's in-process event, through the application: services import nothing of autobuild.
    build_succeeded_listeners(app).append(on_build_succeeded)

    async def periodic() -> None:
        await in_thread("reconcile at start", services.deploy)
        while True:
            await asyncio.sleep(config.services.check_interval)  # the check's period, not a synchronisation
            await in_thread("repair", services.repair)
            await in_thread("registry check", services.check_registry)

    loop: asyncio.AbstractEventLoop | None = None

    def on_exit(exit: ContainerExit) -> None:
        """A version's container exited (the follower's thread): restored if it is the serving one."""
        if loop is not None and config.services.get(exit.component) is not None:
            loop.call_soon_threadsafe(spawn, in_thread("restore after an exit", services.restore, exit.component,
                                                       exit.container, exit.exit_code))

    # The engine's exit feed of this host's engine, versions only (the launcher's follower logs exits; this
    # one acts on them). Services on other nodes are looked at by the periodic repair.
    exits = ContainerEventFollower(config.stack.docker.socket, emit=on_exit,
                                   filters={"type": "container", "event": ["die"], "label": [SERVICE_LABEL]})

    async def start(_: web.Application) -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        exits.start()
        spawn(periodic())
        spawn(announce_following())

    async def announce_following() -> None:
        if await asyncio.to_thread(exits.wait_connected, 60):
            log.info("services: following the engine's container exits")

    async def stop(_: web.Application) -> None:
        await asyncio.to_thread(exits.stop)
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=config.server.shutdown_timeout)
        services.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
