"""Which nodes answer, remembered between requests, and the background retry of those that do not.

Requests (create, the node list) do not ask a node that last failed by timing out: asking
again would cost every create that node's timeout. (One that failed fast — connection
refused, its socket gone — costs nothing to ask, so requests still do.) Down nodes are
retried in the background, by one prober thread, with back-off: the first
retry after `base` seconds, each failed one doubling the wait up to `maximum`. Any call
that does reach a node (the prober's ping, reconciliation, stop, connect) marks it up or
down by its outcome, so a node comes back as soon as anything hears it answer.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from asci_core.jsonlog import get_logger

log = get_logger("launcher")

RETRY_BASE = 1.0
RETRY_MAX = 60.0


@dataclass
class _Down:
    reason: str
    since: float
    failures: int
    next_try: float
    slow: bool = False  # the last failure was a timeout: requests do not wait for it again
    probing: bool = False


class HealthBook:
    """Down nodes with their reason and retry time; every node not in it counts as up. Thread-safe."""

    def __init__(self, base: float = RETRY_BASE, maximum: float = RETRY_MAX,
                 clock: Callable[[], float] = time.monotonic):
        self.base = base
        self.maximum = maximum
        self._clock = clock
        self._down: dict[str, _Down] = {}
        self._lock = threading.Lock()
        self.changed = threading.Event()  # a node went down: the prober looks again

    def mark_down(self, name: str, reason: str, slow: bool = False) -> bool:
        """NAME did not answer (SLOW: it timed out); True when it was up until now. Each failure
        doubles the wait before the next background try."""
        now = self._clock()
        with self._lock:
            entry = self._down.get(name)
            if entry is None:
                entry = self._down[name] = _Down(reason, now, 0, now)
            entry.reason = reason
            entry.slow = slow
            entry.failures += 1
            if not entry.probing:  # a retry in flight schedules the next one when it ends
                entry.next_try = now + self._wait(entry.failures)
            newly = entry.failures == 1
        self.changed.set()
        return newly

    def _wait(self, failures: int) -> float:
        return min(self.maximum, self.base * 2 ** (failures - 1))

    def mark_up(self, name: str) -> bool:
        """NAME answered; True when it was down until now."""
        with self._lock:
            return self._down.pop(name, None) is not None

    def is_down(self, name: str) -> bool:
        with self._lock:
            return name in self._down

    def avoid(self, name: str) -> bool:
        """Whether requests should skip NAME: it is down and its last failure took its whole timeout."""
        with self._lock:
            entry = self._down.get(name)
            return entry is not None and entry.slow

    def down(self) -> dict[str, str]:
        with self._lock:
            return {name: entry.reason for name, entry in self._down.items()}

    def describe(self, name: str) -> str:
        """Why NAME is down and when it is tried again, for answers to requests."""
        now = self._clock()
        with self._lock:
            entry = self._down.get(name)
            if entry is None:
                return ""
            probing, wait = entry.probing, entry.next_try - now
        again = "being retried now" if probing or wait <= 0 else f"next try in {math.ceil(wait):g} s"
        return f"{entry.reason}; retried in the background, {again}"

    def claim_due(self) -> list[str]:
        """Down nodes whose retry time has come, each handed out once until its outcome is marked."""
        now = self._clock()
        with self._lock:
            due = [name for name, entry in self._down.items() if not entry.probing and entry.next_try <= now]
            for name in due:
                self._down[name].probing = True
            return sorted(due)

    def finish_probe(self, name: str) -> None:
        """A claimed retry ended: a node still down waits its back-off before the next one."""
        now = self._clock()
        with self._lock:
            entry = self._down.get(name)
            if entry is not None and entry.probing:
                entry.probing = False
                entry.next_try = now + self._wait(entry.failures)
        self.changed.set()

    def next_due_in(self) -> float | None:
        """Seconds until the next retry is due; None when no node waits for one."""
        now = self._clock()
        with self._lock:
            waits = [e.next_try - now for e in self._down.values() if not e.probing]
        return max(0.0, min(waits)) if waits else None


class NodeProber:
    """The background thread that retries down nodes. PROBE(name) must mark the outcome in BOOK
    (NodePool.call does) and may raise; it runs on a small pool so one hung node delays no other."""

    def __init__(self, book: HealthBook, probe: Callable[[str], object], workers: int = 4):
        self.book = book
        self._probe = probe
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asci-node-probe")
        self._thread = threading.Thread(target=self._run, name="asci-node-prober", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.book.next_due_in()
            self.book.changed.wait(timeout=60.0 if wait is None else wait)
            self.book.changed.clear()
            if self._stop.is_set():
                return
            for name in self.book.claim_due():
                self._workers.submit(self._try, name)

    def _try(self, name: str) -> None:
        try:
            self._probe(name)
        except Exception:  # NodeDown and the like: the outcome is in the book; nothing may end the prober
            pass
        finally:
            self.book.finish_probe(name)

    def close(self) -> None:
        self._stop.set()
        self.book.changed.set()
        self._thread.join(timeout=5)
        self._workers.shutdown(wait=False, cancel_futures=True)


def log_transition(name: str, went_down: bool, reason: str = "") -> None:
    if went_down:
        log.warning("node down", node=name, reason=reason)
    else:
        log.info("node answering again", node=name)
