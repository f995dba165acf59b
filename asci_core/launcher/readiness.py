"""When a started session is ready, and why one that ended is gone.

Ready means the session's VNC server greets a TCP connection at the address `connect` hands
the proxy (bridge or published: the launcher runs beside the proxy, so what it reaches the
proxy reaches). A running container alone is not enough: the desktop images' entry point
checks the identity it is given (ASCI_GROUPS, uid clashes) and exits 64 with one line when it
refuses, a moment after the engine said "started". So `create` waits, bounded, for the first of
"the port answers" and "the container is no longer running"; the viewer's first login then
finds Xvnc listening, so the wait moves time from the proxy's connect retries into create
rather than adding it (bench/launcher_sessions.py). An ended session's reason is its last log
line (the journald driver still serves the engine's log API on Engine 20.10) with its exit
code, or the engine's State.Error when it logged nothing.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

import docker.errors

from .settings import NodeSettings
from .vnc_endpoint import endpoint

READY, ENDED, WAITING = "ready", "ended", "waiting"
POLL = 0.05
PROBE_TIMEOUT = 0.25
# Xvnc greets ("RFB 003.008") as soon as it accepts; a loaded machine may take a moment.
GREETING_TIMEOUT = 1.0
# The journald driver hands a line to the journal asynchronously: an exit can be seen before its last line.
LOG_GRACE = 1.0
REASON_LENGTH = 300


@dataclass(frozen=True)
class Outcome:
    state: str  # READY, ENDED or WAITING (the deadline passed while it runs)
    reason: str = ""


def port_answers(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a VNC server greets at ADDRESS:PORT. The greeting, not the TCP handshake: on a node
    that publishes the port the engine's userland proxy accepts connections before Xvnc listens."""
    if not address or not port:
        return False
    try:
        with socket.create_connection((address, port), timeout=timeout) as probe:
            probe.settimeout(GREETING_TIMEOUT)
            return probe.recv(4) == b"RFB "
    except OSError:
        return False


def wait_ready(client: Any, container_id: str, node: NodeSettings, network: str, timeout: float,
               stopping: Callable[[], bool] = lambda: False) -> Outcome:
    """Poll the container and its VNC port until one of them decides, or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check(client, container_id, node, network)
        if outcome.state != WAITING or time.monotonic() >= deadline or stopping():
            return outcome
        time.sleep(POLL)


def check(client: Any, container_id: str, node: NodeSettings, network: str) -> Outcome:
    """One look: ENDED (with the reason) when the container no longer runs, READY when its port answers."""
    try:
        attrs = client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return Outcome(ENDED, "container vanished")
    if not (attrs.get("State") or {}).get("Running"):
        return Outcome(ENDED, ended_reason(client, container_id, attrs))
    address, port = endpoint(node, attrs, network)
    return Outcome(READY) if port_answers(address, port) else Outcome(WAITING)


def ended_reason(client: Any, container_id: str, attrs: dict | None = None) -> str:
    """"exited with code N: <its last log line>", in one line of at most REASON_LENGTH characters."""
    if attrs is None:
        attrs = client.api.inspect_container(container_id)
    state = attrs.get("State") or {}
    status = state.get("Status") or "not running"
    head = f"{status} with code {state.get('ExitCode')}" if status == "exited" else status
    line = last_log_line(client, container_id) or (state.get("Error") or "").strip()
    return one_line(f"{head}: {line}" if line else head)


def last_log_line(client: Any, container_id: str) -> str:
    deadline = time.monotonic() + LOG_GRACE
    while True:
        try:
            text = client.api.logs(container_id, stdout=True, stderr=True, tail=5).decode(errors="replace")
        except docker.errors.APIError:
            return ""  # a log driver without reading (syslog, ...): the exit code has to do
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines or time.monotonic() >= deadline:
            return lines[-1] if lines else ""
        time.sleep(POLL)


def one_line(text: str) -> str:
    printable = "".join(c if c.isprintable() else " " for c in text)
    return printable[:REASON_LENGTH]
