"""The sessions API served for real on a loopback port, from a config file the `asci` binary reads too."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import requests
import yaml
from aiohttp import web

from asci_core.config import load_config
from asci_core.http_guard import GuardedRunner
from asci_core.launcher import http
from asci_core.launcher.api_tokens import admin_token_path, read_admin_token
from tests.conftest import free_port
from tests.integration.launcher_support import TINY, USERS

USER_TOKENS = {"alice": "alice-token-" + "a" * 32, "bob": "bob-token-" + "b" * 32,
               "carol": "carol-token-" + "c" * 32, "proxy": "proxy-token-" + "p" * 32}


def write_config(tmp_path: Path, socket_path: str, data_root: Path, image: str = TINY,
                 launcher: dict[str, Any] | None = None, api: dict[str, Any] | None = None) -> Path:
    """A configuration with the stand-in environments on the local engine (2 CPUs, 4g), its own
    workdir and users, and a token per test user."""
    (tmp_path / "users.yaml").write_text(USERS)
    mounts = [{"source": f"{data_root}/data/{{user}}", "target": "/home/{user}/data"},
              {"source": f"{data_root}/scratch/{{user}}", "target": "/scratch", "read_only": False}]
    tiny = dict(image=image, command=["sleep", "3600"], cpus=0.25, memory="64m", shm_size="16m", pids_limit=64,
                allowed_groups=["i03"], mounts=mounts)
    section: dict[str, Any] = {
        "workdir": str(tmp_path / "launcher"), "users_file": str(tmp_path / "users.yaml"), "stop_timeout": 2,
        "engine_timeout": 20.0,
        # The shared engine runs every helper's containers: measured usage would make the asserted
        # placement reasons depend on the machine's load (test_launcher_usage measures on its own nodes).
        "usage_interval": 0,
        "nodes": [{"name": "local", "url": f"unix://{socket_path}", "cpus": 2.0, "memory": "4g", "gpus": 0}],
        "environments": [
            {"name": "tiny", **tiny},
            {"name": "huge", **tiny, "cpus": 64},
            {"name": "fat", **tiny, "memory": "64g"},
            {"name": "gpu", **tiny, "gpus": 2},
        ]}
    section.update(launcher or {})
    tokens = [{"user": user, "token": token, "service": user == "proxy"} for user, token in USER_TOKENS.items()]
    path = tmp_path / "asci.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"port": free_port()},
        "stack": {"state_dir": str(tmp_path / "state")},
        "launcher": section,
        "launcher_api": {"tokens": tokens, **(api or {})},
    }))
    return path


class ServedApi:
    """The API on a real port, its event loop in a thread of its own, as under `asci serve`."""

    def __init__(self, config_path: Path, scope: dict[str, str], make_launcher: Any = None):
        """MAKE_LAUNCHER(config): builds the launcher instead of Launcher.from_config(config, scope)."""
        self.config = load_config(config_path)
        self.config_path = config_path
        self.scope = scope
        self.make_launcher = make_launcher
        self.api: web.Application | None = None
        self.url = f"http://127.0.0.1:{self.config.server.port}"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: GuardedRunner | None = None

    def start(self) -> "ServedApi":
        self._thread.start()

        async def up() -> None:
            app = web.Application()
            make = (lambda: self.make_launcher(self.config)) if self.make_launcher else None
            self.api = http.setup(app, self.config, scope=self.scope, make_launcher=make)
            self.runner = GuardedRunner(app, access_log=None)  # as `asci serve` runs it
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.config.server.port).start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(120)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    @property
    def admin_token(self) -> str:
        return read_admin_token(admin_token_path(self.config))

    @property
    def launcher(self):
        return self.api[http.STATE].launcher

    def call(self, method: str, path: str, token: str | None = "admin", user: str | None = None,
             **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {self.admin_token if token == 'admin' else USER_TOKENS.get(token, token)}"
        if user is not None:
            headers["X-Asci-User"] = user
        return requests.request(method, self.url + "/api/v1" + path, headers=headers, timeout=120, **kw)
