"""ASCI's `container exited` line, written from the Docker engine's own events.

The alert rules container-restart-loop and container-oom-killed read this line (README
"Alerts"), because the engine's events never reach the journal. Every container ASCI starts
carries the `asci.component` label (sessions: `session`, services: their name), so one follower
per `asci serve` covers them all.

The kernel's OOM kill shows as an `oom` event followed by the container's `die`: the two are
joined so one line carries `oom_killed: true`. `restarts` counts the exits of the same container
name this follower saw in the RESTART_WINDOW before this one (not the engine's RestartCount,
which only a restart policy raises and which a container started again by hand resets); a
follower started after a crash loop began counts from its own start.

Engine 20.10 on cgroup v2 misses some OOM kills: when the killed process was the container's
only one, the cgroup can be gone before the engine reads its memory events, so neither an `oom`
event nor State.OOMKilled says so (the exit code is 137, like any SIGKILL). Such an exit is
logged with `oom_killed: false`; a kill of one process in a container that lives on is seen.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Deque

from asci_core.jsonlog import get_logger
from asci_core.stack.docker_engine import docker_client

from .sizes import format_size

# Its own component name: the launcher's lines stay the launcher's, and exits of any ASCI container
# (services too) are not mistaken for the session launcher speaking.
log = get_logger("containers")

EXIT_MESSAGE = "container exited"
COMPONENT_LABEL = "asci.component"
USER_LABEL = "asci.user"
# Engine 20.10 accepts a bare label key ("has the label") and several event names in one filter.
FILTERS = {"type": "container", "event": ["die", "oom"], "label": [COMPONENT_LABEL]}
# The restart-loop rule's own timeframe: a count over the same span reads the same as the alert.
RESTART_WINDOW = 600.0


@dataclass(frozen=True)
class ContainerExit:
    container: str
    exit_code: int
    oom_killed: bool
    restarts: int
    component: str
    user: str | None = None
    memory_limit: str | None = None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"container": self.container, "exit_code": self.exit_code,
                                  "oom_killed": self.oom_killed, "restarts": self.restarts,
                                  "container_component": self.component}
        if self.user:
            fields["user"] = self.user
        if self.memory_limit:
            fields["memory_limit"] = self.memory_limit
        return fields


def _event_time(event: dict[str, Any]) -> float:
    nano = event.get("timeNano")
    if isinstance(nano, int):
        return nano / 1e9
    return float(event.get("time") or 0)


class ExitTracker:
    """Engine events in, ContainerExit out: the part without an engine."""

    def __init__(self, window: float = RESTART_WINDOW):
        self.window = window
        self._oom: dict[str, float] = {}             # container id -> time of its oom event
        self._exits: dict[str, Deque[float]] = {}     # container name -> times of its recent exits

    def feed(self, event: dict[str, Any]) -> ContainerExit | None:
        if event.get("Type") != "container":
            return None
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        component = attributes.get(COMPONENT_LABEL)
        if not component:
            return None  # not ASCI's (a filter the engine ignored must not make us speak for others)
        action = event.get("Action") or event.get("status")
        container_id = actor.get("ID") or event.get("id") or ""
        at = _event_time(event)
        self._forget_before(at - self.window)
        if action == "oom":
            self._oom[container_id] = at
            return None
        if action != "die":
            return None
        oom_killed = self._oom.pop(container_id, None) is not None
        try:
            exit_code = int(attributes.get("exitCode", -1))
        except ValueError:
            exit_code = -1
        name = attributes.get("name") or container_id[:12]
        seen = self._exits.setdefault(name, collections.deque())
        restarts = len(seen)
        seen.append(at)
        return ContainerExit(name, exit_code, oom_killed, restarts, component, attributes.get(USER_LABEL))

    def _forget_before(self, limit: float) -> None:
        for container_id in [c for c, t in self._oom.items() if t < limit]:
            del self._oom[container_id]
        for name in list(self._exits):
            seen = self._exits[name]
            while seen and seen[0] < limit:
                seen.popleft()
            if not seen:
                del self._exits[name]


def log_exit(exit: ContainerExit) -> None:
    # warning: an exit of a supervised container is worth a look, an error it is not (yet).
    log.warning(EXIT_MESSAGE, **exit.fields())


class ContainerEventFollower:
    """A thread following the engine at ADDRESS, calling EMIT once per exit of an ASCI container.

    The engine going away (restart, upgrade) costs no exit: the follower reconnects with back-off
    and asks for the events since the last one it saw."""

    def __init__(self, address: str | os.PathLike[str], emit: Callable[[ContainerExit], None] = log_exit,
                 window: float = RESTART_WINDOW, max_backoff: float = 30.0, filters: dict[str, Any] | None = None):
        self.address = address
        self.emit = emit
        self.tracker = ExitTracker(window)
        self.max_backoff = max_backoff
        self.filters = filters or FILTERS
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        self._client: Any = None
        self._since: str | None = None
        self._last_nano = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="container-events", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """True once the event stream is open (tests start containers only after this)."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._close()
        if self._thread is not None:
            self._thread.join(timeout)

    def _close(self) -> None:
        with self._lock:
            stream, client, self._stream, self._client = self._stream, self._client, None, None
        self._connected.clear()
        for closing in (stream, client):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # closing from another thread may race the reader; it is going anyway
                    pass

    def _run(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            try:
                self._follow()
                delay = 1.0  # the engine closed a healthy stream: reconnect at once
            except Exception as exc:
                if self._stopping.is_set():
                    break
                log.warning("container events lost, reconnecting", reason=str(exc) or type(exc).__name__,
                            retry_seconds=delay)
                self._close()
                if self._stopping.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff)
        self._close()

    def _follow(self) -> None:
        client = docker_client(self.address, timeout=30)
        with self._lock:
            if self._stopping.is_set():
                client.close()
                return
            self._client = client
        stream = client.events(decode=True, filters=self.filters, since=self._since)
        with self._lock:
            self._stream = stream
        if self._stopping.is_set():
            return
        self._connected.set()
        for event in stream:
            nano = event.get("timeNano")
            if isinstance(nano, int):
                if nano <= self._last_nano:
                    continue  # replayed by `since` after a reconnect
                self._last_nano = nano
                self._since = f"{nano // 1_000_000_000}.{nano % 1_000_000_000:09d}"
            exit = self.tracker.feed(event)
            if exit is not None:
                try:
                    self.emit(self._with_engine_state(client, exit, event))
                except Exception as exc:  # one bad emit must not end the feed for every other container
                    log.error("container exit not logged", reason=str(exc) or type(exc).__name__)
        self._close()

    @staticmethod
    def _with_engine_state(client: Any, exit: ContainerExit, event: dict[str, Any]) -> ContainerExit:
        """Adds what the die event does not carry: the memory limit (for the OOM alert's text), and
        the engine's own OOMKilled flag when its oom event came late or not at all."""
        try:
            attrs = client.api.inspect_container((event.get("Actor") or {}).get("ID"))
        except Exception:  # removed already (auto_remove) or the engine went away: the line goes out as it is
            return exit
        memory = (attrs.get("HostConfig") or {}).get("Memory")
        oom_killed = exit.oom_killed or bool((attrs.get("State") or {}).get("OOMKilled"))
        return dataclasses.replace(exit, oom_killed=oom_killed, memory_limit=format_size(memory) if memory else None)
