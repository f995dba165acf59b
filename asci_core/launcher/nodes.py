"""The Docker engines that run sessions, and whether each one answers.

Every engine call goes through `NodePool.call`, which gives each client an
explicit timeout and turns "the engine did not answer" (connection refused or
reset, read timeout, a client that cannot be built) into `NodeDown` and marks the
node down. An `APIError` is an answer, so it passes through and the node stays
up. Down nodes are remembered in a `HealthBook` (node_health): requests skip those
that timed out, and a background prober retries them all with back-off; any call
that reaches a node (reconcile, stop, connect, the prober) marks it up again when
it answers.
"""
from __future__ import annotations

from asci_core.errors import AsciError, UsageError

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import docker
import docker.errors
import requests.exceptions

from .inventory import Capacity, detect_local_gpus
from .opengl import assignable
from .node_health import RETRY_BASE, RETRY_MAX, HealthBook, NodeProber, log_transition
from .settings import NodeSettings
from asci_core.stack.docker_engine import docker_client

T = TypeVar("T")
LOCAL_NODE = "local"


class NodeDown(AsciError):
    def __init__(self, node: str, reason: str):
        super().__init__(f"node {node} is not answering ({reason})")
        self.node = node
        self.reason = reason


def default_nodes(nodes: list[NodeSettings], docker_socket: str) -> list[NodeSettings]:
    """The configured nodes, or the local engine alone when none are configured."""
    return nodes or [NodeSettings(name=LOCAL_NODE, url=f"unix://{docker_socket}")]


@dataclass
class Node:
    settings: NodeSettings
    client: Any = None
    capacity: Capacity | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.settings.name


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, (requests.exceptions.Timeout, TimeoutError)) or (
        isinstance(exc, requests.exceptions.ConnectionError) and "timed out" in str(exc).lower())


class NodePool:
    def __init__(self, nodes: list[NodeSettings], timeout: float,
                 client_factory: Callable[[NodeSettings, float], Any] | None = None,
                 retry_base: float = RETRY_BASE, retry_max: float = RETRY_MAX):
        self.timeout = timeout
        self.nodes = {n.name: Node(n) for n in nodes}
        self._factory = client_factory or make_client
        self.health = HealthBook(retry_base, retry_max)
        self._prober: NodeProber | None = None
        self._prober_lock = threading.Lock()
        self._closed = False

    def names(self) -> list[str]:
        return sorted(self.nodes)

    def timeout_for(self, name: str) -> float:
        return self.nodes[name].settings.timeout or self.timeout

    def down(self) -> dict[str, str]:
        return self.health.down()

    def mark_down(self, name: str, reason: str, slow: bool = False) -> None:
        """NAME did not answer (SLOW: it timed out, or missed a request's deadline, and requests skip
        it); the prober retries it."""
        if self.health.mark_down(name, reason, slow):
            log_transition(name, True, reason)
        self._ensure_prober()

    def mark_up(self, name: str) -> None:
        if self.health.mark_up(name):
            log_transition(name, False)

    def call(self, name: str, fn: Callable[[Any], T]) -> T:
        node = self.nodes[name]
        client = None
        try:
            with node.lock:  # requests, the sampler and the prober share one client per node
                if node.client is None:
                    node.client = self._factory(node.settings, self.timeout_for(name))
                client = node.client
            result = fn(client)
        except docker.errors.APIError:
            self.mark_up(name)
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                docker.errors.DockerException, OSError) as exc:
            reason = _describe(exc)
            self._drop_client(node, client)
            self.mark_down(name, reason, slow=_timed_out(exc))
            raise NodeDown(name, reason) from None
        self.mark_up(name)
        return result

    def probe(self, name: str) -> None:
        """One cheap call: marks NAME up when it answers, down when it does not."""
        self.call(name, lambda c: c.ping())

    def _ensure_prober(self) -> None:
        with self._prober_lock:
            if self._prober is None and not self._closed:
                self._prober = NodeProber(self.health, self.probe)

    def capacity(self, name: str) -> Capacity:
        """Configured capacity, the engine's figures for what is not configured (cached)."""
        node = self.nodes[name]
        if node.capacity is None:
            cfg = node.settings
            info = {} if cfg.cpus is not None and cfg.memory is not None else self.call(name, lambda c: c.info())
            if cfg.gpus is not None:
                gpu_ids = tuple(str(i) for i in range(cfg.gpus))
            elif cfg.url.startswith("unix://"):
                gpu_ids = tuple(g.index for g in detect_local_gpus())
            else:
                gpu_ids = ()
            node.capacity = Capacity(
                cpus=cfg.cpus if cfg.cpus is not None else float(info["NCPU"]),
                memory=cfg.memory_bytes if cfg.memory is not None else int(info["MemTotal"]),
                gpus=len(gpu_ids), gpu_ids=gpu_ids, labels=dict(cfg.labels),
                gl_backends=frozenset(cfg.gl_backends or ()), render_devices=assignable(cfg.render_devices or ()))
        return node.capacity

    def close(self) -> None:
        with self._prober_lock:
            self._closed = True
            prober, self._prober = self._prober, None
        if prober is not None:
            prober.close()
        for node in self.nodes.values():
            self._drop_client(node)

    @staticmethod
    def _drop_client(node: Node, client: Any = None) -> None:
        """Close NODE's client (only CLIENT, when given: another thread may have replaced it already)."""
        with node.lock:
            if node.client is None or (client is not None and node.client is not client):
                return
            dropped, node.client = node.client, None
        try:
            dropped.close()
        except Exception:  # closing a broken client must not hide why it broke
            pass


def make_client(settings: NodeSettings, timeout: float) -> docker.DockerClient:
    tls: Any = False
    if settings.tls is not None:
        tls = docker.tls.TLSConfig(client_cert=(str(settings.tls.client_cert), str(settings.tls.client_key)),
                                   ca_cert=str(settings.tls.ca_cert), verify=True)
    # An explicit API version: "auto" would cost a round trip per client and fail construction on a dead node.
    return docker_client(settings.url, timeout=timeout, tls=tls, version="1.41")
