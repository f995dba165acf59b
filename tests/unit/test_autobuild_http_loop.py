"""The builds API reads SQLite and log files in worker threads: a slow read never stalls the event loop."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from autobuild import http


class BlockedStore:
    """Every read waits until released, as a read behind a long write transaction would."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def _block(self) -> None:
        self.entered.set()
        assert self.release.wait(10), "never released"

    def list(self, *args):
        self._block()
        return []

    def get(self, build_id):
        self._block()
        return None


async def answered_while_blocked(path: str, tmp: Path) -> tuple[int, int]:
    store = BlockedStore()
    app = web.Application()
    app[http.AUTOBUILD_KEY] = SimpleNamespace(store=store, log_path=lambda i: tmp / f"{i}.log")  # type: ignore
    app.router.add_get("/builds", http.list_builds)
    app.router.add_get("/builds/{id}", http.show_build)
    app.router.add_get("/builds/{id}/log", http.build_log)
    async def alive(request: web.Request) -> web.Response:
        return web.Response(text="yes")

    app.router.add_get("/alive", alive)
    async with TestClient(TestServer(app)) as client:
        slow = asyncio.create_task(client.get(path))
        await asyncio.to_thread(store.entered.wait, 10)
        alive = await asyncio.wait_for(client.get("/alive"), 5)  # the loop answers while the read waits
        store.release.set()
        return alive.status, (await slow).status


def test_a_blocked_store_read_does_not_stall_other_requests(tmp_path):
    for path in ("/builds", "/builds/1", "/builds/1/log"):
        assert asyncio.run(answered_while_blocked(path, tmp_path)) == (200, 200 if path == "/builds" else 404)
