"""A host's loopback TCP ports made reachable at the same address inside a node's network
namespace (test tooling): the test nodes' engines then pull from the registry on 127.0.0.1 like
an engine on the registry's host would, and the host's firewall and routes stay untouched.

The listener is created by a short-lived thread that has entered the namespace (setns is per
thread for network namespaces); a socket stays in the namespace it was made in, so accepting and
relaying run in ordinary threads, whose connections to the target are made on the host.
"""
from __future__ import annotations

import ctypes
import os
import socket
import threading
from pathlib import Path
from typing import Callable, TypeVar
from tests.support.socket_pump import pump

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def inside(netns: Path, make: Callable[[], T]) -> T:
    """MAKE() run by a thread inside the network namespace at NETNS: the sockets it makes are there."""
    made: dict[str, object] = {}

    def enter() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made["value"] = make()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            made["error"] = exc

    thread = threading.Thread(target=enter, name=f"in-{netns.name}")
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["value"]  # type: ignore[return-value]


def listen_in(netns: Path, port: int) -> socket.socket:
    """A TCP listener on 127.0.0.1:PORT inside the network namespace at NETNS."""
    def listen() -> socket.socket:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(64)
        return server
    return inside(netns, listen)


def connect_in(netns: Path, host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to HOST:PORT as seen from inside the network namespace at NETNS."""
    return inside(netns, lambda: socket.create_connection((host, port), timeout=timeout))


class LoopbackRelay:
    """127.0.0.1:PORT in each namespace relayed to 127.0.0.1:PORT on the host, for each of PORTS."""

    def __init__(self, namespaces: list[Path], ports: list[int]):
        self._servers = [listen_in(ns, port) for ns in namespaces for port in ports]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        for server in self._servers:
            threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        for server in self._servers:
            server.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        port = server.getsockname()[1]
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                target = socket.create_connection(("127.0.0.1", port), timeout=10)
                target.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, target]
            for a, b in ((client, target), (target, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

