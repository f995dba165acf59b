"""Shared by the services tests: a load loop of HTTP requests, taking a test service away entirely."""
from __future__ import annotations

import threading
import time
from typing import Any

import docker.errors
import requests


def remove_service(docker_client: Any, name: str) -> None:
    for c in docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"}):
        c.remove(force=True)
    for c in docker_client.containers.list(all=True, filters={"label": f"asci.service-front={name}"}):
        c.remove(force=True)
    for network in docker_client.networks.list(names=[f"asci-svc-{name}"]):
        try:
            network.remove()
        except docker.errors.NotFound:
            pass


class EngineRelay:
    """tcp://127.0.0.1:PORT relayed byte for byte to the local engine's socket: the same engine seen as a
    node reached over the network, so the services take the path of a node other than this host."""

    def __init__(self, socket_path: str):
        import socket
        import threading

        self.socket_path = socket_path
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(self.socket_path)
            for src, dst in ((client, engine), (engine, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.server.close()


class Load(threading.Thread):
    """GETs back to back, each on a fresh connection; every refused, reset or non-200 answer counts."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stopping = url, False
        self.answers: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopping:
            try:
                answer = requests.get(self.url, timeout=5, headers={"Connection": "close"})
                if answer.status_code == 200:
                    self.answers.append(answer.text.strip())
                else:
                    self.failures.append(f"HTTP {answer.status_code}")
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)

    def wait_for(self, version: str, count: int, timeout: float = 30) -> None:
        """Until COUNT answers of VERSION arrived (bounded poll of the loop's own results)."""
        deadline = time.monotonic() + timeout
        while self.answers.count(version) < count:
            assert time.monotonic() < deadline, f"{version} answered {self.answers.count(version)} times"
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping = True
        self.join(timeout=30)
