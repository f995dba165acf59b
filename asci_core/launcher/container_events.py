"""ASCI's `container exited` line, written from the Docker engine's own events.

The alert rules container-restart-loop and container-oom-killed read this line (README
"Alerts"), because the engine's events never reach the journal. Every container ASCI starts
carries the `asci.component` label (sessions: `session`, services: their name), so one follower
covers them all. Several `asci serve` on one engine would each log every exit (and fire every
alert twice): given a LeaderLock, only its holder follows, the others stand by (leader_lock).

The kernel's OOM kill shows as an `oom` event followed by the container's `die`: the two are
joined so one line carries `oom_killed: true`. `restarts` counts the exits of the same container
name this follower saw in the RESTART_WINDOW before this one (not the engine's RestartCount,
which only a restart policy raises and which a container started again by hand resets). A
follower without a lock counts from its own start; a lock holder first reads the window's events
the engine still keeps (the engine keeps the last 256 of any kind), to count and to log those the
previous holder did not.

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
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque

from asci_core.errors import AsciError
from asci_core.jsonlog import get_logger
from asci_core.stack.docker_engine import docker_client

from .leader_lock import LeaderLock
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


def _since(nano: int) -> str:
    """The engine's `since` for an engine time in nanoseconds (seconds.nanoseconds)."""
    return f"{nano // 1_000_000_000}.{nano % 1_000_000_000:09d}"


class _StandingBy(AsciError):
    """Another follower holds this engine's lock."""


def log_exit(exit: ContainerExit) -> None:
    # warning: an exit of a supervised container is worth a look, an error it is not (yet).
    log.warning(EXIT_MESSAGE, **exit.fields())


class ContainerEventFollower:
    """A thread following the engine at ADDRESS, calling EMIT once per exit of an ASCI container.

    The engine going away (restart, upgrade) costs no exit: the follower reconnects with back-off
    and asks for the events since the last one it saw. With a LOCK it follows only while it holds
    the engine's lock, asking for it again every STANDBY_POLL seconds."""

    def __init__(self, address: str | os.PathLike[str], emit: Callable[[ContainerExit], None] = log_exit,
                 window: float = RESTART_WINDOW, max_backoff: float = 30.0, filters: dict[str, Any] | None = None,
                 lock: LeaderLock | None = None, standby_poll: float = 1.0):
        self.address = address
        self.emit = emit
        self.tracker = ExitTracker(window)
        self.max_backoff = max_backoff
        self.filters = filters or FILTERS
        self.lock = lock
        self.standby_poll = standby_poll
        self._leading = False
        self._announce = False
        self._emit_after = 0  # engine time (ns) up to which an earlier lock holder logged the exits
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
            except _StandingBy:
                self._close()
                if not self._stand_by():
                    break
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
        if self.lock is not None:
            self.lock.release()

    def _stand_by(self) -> bool:
        """Wait until the lock is this follower's: False when stopped first."""
        assert self.lock is not None
        log.info("container events: another asci serve follows this engine, standing by", lock=str(self.lock.path))
        while not self._stopping.wait(self.standby_poll):
            if self.lock.try_take():
                return True
        return False

    def _take_lead(self, client: Any) -> None:
        """Raises _StandingBy unless this follower holds the engine's lock; once it does, it resumes
        where the previous holder stopped."""
        if self.lock is None or self._leading:
            return
        if not self.lock.bound:
            self.lock.bind(client.info()["ID"])
        if not self.lock.try_take():
            raise _StandingBy()
        position = self.lock.position()
        now = time.time_ns()
        # Replay the restart window: its exits count towards restarts, and those after the previous
        # holder's last event (or after now, when nobody held the lock before) are logged.
        self._emit_after = now if position is None else position
        self._since = _since(now - int(self.tracker.window * 1e9))
        self._leading = self._announce = True

    def _follow(self) -> None:
        client = docker_client(self.address, timeout=30)
        with self._lock:
            if self._stopping.is_set():
                client.close()
                return
            self._client = client
        self._take_lead(client)
        stream = client.events(decode=True, filters=self.filters, since=self._since)
        with self._lock:
            self._stream = stream
        if self._stopping.is_set():
            return
        self._connected.set()
        if self._announce:
            self._announce = False
            log.info("container events: following this engine", lock=str(self.lock.path) if self.lock else None)
        for event in stream:
            nano = event.get("timeNano")
            if isinstance(nano, int):
                if nano <= self._last_nano:
                    continue  # replayed by `since` after a reconnect
                self._last_nano = nano
                self._since = _since(nano)
            exit = self.tracker.feed(event)
            if isinstance(nano, int) and nano <= self._emit_after:
                continue  # an earlier holder logged it: counted for restarts, not logged again
            if exit is not None:
                try:
                    self.emit(self._with_engine_state(client, exit, event))
                except Exception as exc:  # one bad emit must not end the feed for every other container
                    log.error("container exit not logged", reason=str(exc) or type(exc).__name__)
            if self.lock is not None and isinstance(nano, int):
                self.lock.record(nano)
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
