"""Building a Launcher on the real local engine for tests, scoped so runs and tests never see each other."""
from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Callable

from asci_core.launcher.directory import Directory, LocalUsersFile
from asci_core.launcher.nodes import NodePool
from asci_core.launcher.sessions import Launcher
from asci_core.launcher.settings import EnvironmentSettings, LauncherSettings, MountSettings, NodeSettings
from asci_core.launcher.store import SessionStore
from tests.support.waiting import wait_until
from tests.support.socket_pump import pump

USERS = """
users:
  - {name: alice, uid: 5001, gid: 5001, groups: [i03]}
  - {name: bob, uid: 5002, gid: 5002, groups: [i03]}
  - {name: carol, uid: 5003, gid: 5003, groups: [i04]}
"""
TINY = "asci/tiny:latest"


def tiny_environment(data_root: Path, name: str = "tiny", command: list[str] | None = None,
                     **overrides: Any) -> EnvironmentSettings:
    values: dict[str, Any] = dict(
        name=name, image=TINY, command=command or ["sleep", "3600"], cpus=0.25, memory="64m", shm_size="16m",
        pids_limit=64, allowed_groups=["i03"], env={"LANG": "C.UTF-8"},
        # The stand-in serves no VNC: ready once it runs, even when a test gives it `account: image`.
        ready_check="running",
        mounts=[MountSettings(f"{data_root}/data/{{user}}", "/home/{user}/data", True),
                MountSettings(f"{data_root}/scratch/{{user}}", "/scratch", False)])
    values.update(overrides)
    return EnvironmentSettings(**values)


def make_data(data_root: Path, *users: tuple[str, int]) -> None:
    import os
    for name, uid in users:
        for kind in ("data", "scratch"):
            path = data_root / kind / name
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, uid)


def build_launcher(tmp_path: Path, socket_path: str, scope: dict[str, str], environments: list[EnvironmentSettings],
                   extra_nodes: list[NodeSettings] = (), directory: Directory | None = None,
                   store_path: Path | None = None, nodes: list[NodeSettings] | None = None,
                   registry: Any = None, **settings: Any) -> Launcher:
    local = NodeSettings(name="local", url=f"unix://{socket_path}", cpus=2.0, memory="4g", gpus=0)
    # usage_interval 0: the shared engine runs every helper's containers, whose measured use would make
    # placement assertions depend on the machine's load; tests of measured usage set it on their own nodes.
    values: dict[str, Any] = dict(environments=environments, nodes=nodes or [local, *extra_nodes], stop_timeout=2,
                                  engine_timeout=20.0, usage_interval=0.0)
    values.update(settings)
    config = LauncherSettings(**values)
    users = tmp_path / "users.yaml"
    if not users.exists():
        users.write_text(USERS)
    return Launcher(config, SessionStore(store_path or tmp_path / "sessions.sqlite"),
                    directory or LocalUsersFile(users), NodePool(config.nodes, config.engine_timeout), scope,
                    registry=registry)


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    return wait_until(check, timeout, what, interval=0.05)


class SilentEngine:
    """A unix socket that accepts connections and never answers: an engine that hangs."""

    def __init__(self, path: Path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


class EngineRelay:
    """A node's engine socket that the test can cut and restore: it relays to the real engine, and
    `cut()` closes the listener and every open connection, as a node that dies would."""

    def __init__(self, path: Path, engine_socket: str):
        self.path = path
        self.engine_socket = engine_socket
        self.server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(64)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.path.unlink(missing_ok=True)
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.engine_socket)
            with self._lock:
                self._open += [client, engine]
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

