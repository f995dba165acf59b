"""The web page's aiohttp app served for real on a loopback port (own thread and loop), and a host Xvnc."""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from asci_core.http_guard import GuardedRunner
from asci_core.web.app import install
from asci_core.web.state import WebState

from tests.support.waiting import wait_listening


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedApp:
    """`with ServedApp(state) as served:` — served.url answers until the block ends."""

    def __init__(self, state: WebState):
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: GuardedRunner | None = None

    def __enter__(self) -> "ServedApp":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        app = web.Application()
        install(app, self.state)
        self._runner = GuardedRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@dataclass
class HostXvnc:
    port: int
    password: str
    process: subprocess.Popen
    directory: Path
    display: int = 0
    _stopped: bool = field(default=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_host_xvnc(timeout: float = 20.0) -> HostXvnc:
    """A real TigerVNC server on loopback, VncAuth only, run as nobody (never root)."""
    directory = Path(tempfile.mkdtemp(prefix="asci-xvnc-", dir="/tmp"))
    os.chmod(directory, 0o755)
    password = secrets.token_urlsafe(6)[:8]
    secret = subprocess.run(["vncpasswd", "-f"], input=password.encode() + b"\n", capture_output=True,
                            check=True, timeout=10).stdout
    password_file = directory / "passwd"
    password_file.write_bytes(secret)
    os.chmod(password_file, 0o600)
    shutil.chown(password_file, "nobody", "nogroup")
    port = free_port()
    display = 40 + port % 200
    process = subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
         "Xvnc", f":{display}", "-rfbport", str(port), "-SecurityTypes", "VncAuth", "-PasswordFile",
         str(password_file), "-localhost", "-nolisten", "tcp", "-geometry", "640x480", "-depth", "24",
         "-BlacklistThreshold", "1000000", "-desktop", "asci-test",
         "-retro"],  # the classic root weave: a browser test sees non-uniform pixels without a desktop
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=directory, env={"HOME": str(directory), "PATH": "/usr/bin:/bin"})
    server = HostXvnc(port, password, process, directory, display)
    wait_listening(process, port, "Xvnc", timeout, on_failure=server.stop)
    return server
