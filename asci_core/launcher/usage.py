"""What a node's containers really use, sampled in the background and cached with its time.

The engine's view is the only one a remote node offers: each running container's cgroup
figures from `/containers/{id}/stats?stream=false&one-shot=true` (one reading, no second
one a second later). CPU is cumulative, so the rate comes from two readings: the sampler
keeps each container's previous CPU time and the engine's timestamp of it, and a
container's first reading counts no CPU yet. Memory is what the container uses minus its
inactive page cache (as `docker stats` shows it): cache the kernel can drop is not load.

Measured is *every* running container on the engine, ASCI sessions or not — another
launcher's sessions or a beamline's own services keep the node just as busy. Placement
takes the larger of reserved and measured (see placement).

Cost: the engine answers a one-shot request at its next collection tick (up to about a
second on Engine 20.10), so one sampler thread per node asks up to `PARALLEL` containers
at once, every `interval` seconds, and never on a request's path. A node the health book
holds down is left to the prober. A measurement older than `STALE_AFTER` intervals is
not used, so placement never acts on an old picture of a node that stopped answering.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

import docker.errors

from asci_core.jsonlog import get_logger

log = get_logger("launcher")

PARALLEL = 8
STALE_AFTER = 3.0
ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class Reading:
    """One container's cumulative CPU time (ns) at the engine's time READ (s), and its memory in use."""

    cpu_ns: int
    read: float
    memory: int


@dataclass(frozen=True)
class NodeUsage:
    cpus: float
    memory: int
    containers: int
    at: float  # wall-clock time of the sample


def parse_engine_time(text: str) -> float | None:
    """The engine's RFC 3339 timestamp (nanoseconds, Z or an offset) as seconds since the epoch;
    None for anything else, including the zero time of a container that is not running."""
    match = ENGINE_TIME.fullmatch(text)
    if match is None:
        return None
    whole = datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3])).timestamp()
    if whole <= 0:
        return None
    return whole + (int(match[2][:9].ljust(9, "0")) / 1e9 if match[2] else 0.0)


def reading_from_stats(stats: Mapping[str, Any]) -> Reading | None:
    """A Reading from one stats answer (cgroup v1 or v2); None when the container is not running."""
    try:
        cpu_ns = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
    except (KeyError, TypeError, ValueError):
        return None
    read = parse_engine_time(str(stats.get("read") or ""))
    if read is None:
        return None
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    # v1 names the hierarchical figure total_inactive_file, v2 has inactive_file only.
    cache = int(detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0)
    used = int(memory.get("usage") or 0)
    return Reading(cpu_ns, read, used - cache if cache < used else used)


class UsageTracker:
    """Turns successive readings of one node's containers into the node's usage (pure but for state)."""

    def __init__(self) -> None:
        self._previous: dict[str, Reading] = {}

    def update(self, readings: Mapping[str, Reading], at: float) -> NodeUsage:
        cpus = 0.0
        for container, now in readings.items():
            before = self._previous.get(container)
            if before is not None and now.read > before.read and now.cpu_ns >= before.cpu_ns:
                cpus += (now.cpu_ns - before.cpu_ns) / 1e9 / (now.read - before.read)
        self._previous = dict(readings)  # containers that are gone are forgotten
        return NodeUsage(round(cpus, 3), sum(r.memory for r in readings.values()), len(readings), at)


def sample_node(client: Any, workers: ThreadPoolExecutor) -> dict[str, Reading]:
    """One reading of every running container on the engine behind CLIENT."""
    ids = [c["Id"] for c in client.api.containers(filters={"status": ["running"]})]

    def one(container: str) -> tuple[str, Reading | None]:
        try:
            return container, reading_from_stats(client.api.stats(container, stream=False, one_shot=True))
        except docker.errors.APIError:
            return container, None  # exited between the listing and its reading, or cannot be read: not counted
        except ValueError:
            # An empty body: the engine answers so for a container removed while it was being read.
            # requests' JSONDecodeError is an OSError too, and NodePool.call would take the node for down.
            return container, None
    return {cid: r for cid, r in workers.map(one, ids) if r is not None}


class UsageSampler:
    """One background thread per node, each refreshing that node's usage every INTERVAL seconds.

    CALL(name, fn) runs FN with the node's client (NodePool.call: it marks a node that does not
    answer down); IS_DOWN(name) says whether to leave the node to the health prober."""

    def __init__(self, names: list[str], call: Callable[[str, Callable[[Any], Any]], Any],
                 is_down: Callable[[str], bool], interval: float):
        self.interval = interval
        self._names = list(names)
        self._call = call
        self._is_down = is_down
        self._latest: dict[str, NodeUsage] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.rounds: dict[str, int] = {n: 0 for n in names}

    def start(self) -> None:
        """Starts the threads once; nothing when the interval is 0 (reservations only)."""
        with self._lock:
            if self._threads or self.interval <= 0 or self._stop.is_set():
                return
            for name in self._names:
                thread = threading.Thread(target=self._run, args=(name,), name=f"asci-usage-{name}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def snapshot(self, now: float | None = None) -> dict[str, NodeUsage]:
        """The latest usage of each node, leaving out measurements too old to act on."""
        now = time.time() if now is None else now
        limit = STALE_AFTER * self.interval
        with self._lock:
            return {name: u for name, u in self._latest.items() if now - u.at <= limit}

    def _run(self, name: str) -> None:
        tracker = UsageTracker()
        with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix=f"asci-stats-{name}") as workers:
            while not self._stop.is_set():
                if not self._is_down(name):
                    try:
                        readings = self._call(name, lambda c: sample_node(c, workers))
                    except Exception as exc:  # NodeDown (already marked) or an engine error: try next round
                        log.debug("node usage not sampled", node=name, reason=str(exc)[:200])
                    else:
                        usage = tracker.update(readings, time.time())
                        with self._lock:
                            self._latest[name] = usage
                            self.rounds[name] += 1
                self._stop.wait(self.interval)

    def close(self, timeout: float = 5.0) -> None:
        """Stops the threads; one waiting on a hung node is left to end with its call (daemon)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
