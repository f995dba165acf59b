"""How often something may happen, per key (a client address, an account, a user): the
primitives every HTTP front of ASCI throttles with.

- TokenBuckets: a steady rate with a burst (session creates, failed token checks).
- FailureBackoff: failures per key; past a free allowance each further one blocks the key for a
  delay that doubles up to a ceiling, and a key left quiet long enough starts afresh (logins).

Both keep their keys in a BoundedTable, so a flood of distinct keys cannot grow memory
without bound. The policy around them (which keys, what a block means for an answer) stays
with each user: registry.throttle, asci_core.web.throttle, the launcher API.
"""
from __future__ import annotations

import collections
import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Clock = Callable[[], float]

# 2 ** 60 seconds outlasts any ceiling: a larger exponent would only risk float overflow.
MAX_DOUBLINGS = 60


class BoundedTable(Generic[K, V]):
    """Values by key, least recently written first. Past LIMIT rows, those IDLE says carry no
    information go first, then the least recently written."""

    def __init__(self, limit: int, idle: Callable[[V], bool] | None = None):
        self.limit = limit
        self.idle = idle
        self.rows: collections.OrderedDict[K, V] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[K]:
        return iter(self.rows)

    def get(self, key: K) -> V | None:
        return self.rows.get(key)

    def put(self, key: K, value: V) -> V:
        self.rows.pop(key, None)
        self.rows[key] = value
        if len(self.rows) > self.limit:
            self._trim()
        return value

    def pop(self, key: K) -> None:
        self.rows.pop(key, None)

    def _trim(self) -> None:
        if self.idle is not None:
            for key in [k for k, v in self.rows.items() if self.idle(v)]:
                del self.rows[key]
        while len(self.rows) > self.limit:
            self.rows.popitem(last=False)


def digest(key: str) -> bytes:
    """A fixed-size stand-in for a key that may be 60 kB of an attacker's text."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class TokenBuckets:
    """Each key holds up to BURST tokens, refilled at PER_SECOND; taking from an empty bucket fails.

    Keys whose bucket is full again carry no information: they are the first dropped when the
    table grows past MAX_KEYS.
    """

    def __init__(self, burst: int, per_second: float, max_keys: int = 10_000, clock: Clock = time.monotonic):
        self.burst = float(burst)
        self.per_second = per_second
        self.clock = clock
        self._state: BoundedTable[str, tuple[float, float]] = BoundedTable(max_keys, self._full)  # (tokens, when)

    def _level(self, key: str, now: float) -> float:
        tokens, when = self._state.get(key) or (self.burst, now)
        return min(self.burst, tokens + (now - when) * self.per_second)

    def _full(self, row: tuple[float, float]) -> bool:
        tokens, when = row
        return tokens + (self.clock() - when) * self.per_second >= self.burst

    def take(self, key: str) -> bool:
        now = self.clock()
        tokens = self._level(key, now)
        taken = tokens >= 1.0
        self._state.put(key, (tokens - 1.0 if taken else tokens, now))
        return taken

    def empty(self, key: str) -> bool:
        """Whether the next take() would fail, without taking."""
        return self._level(key, self.clock()) < 1.0

    def retry_after(self, key: str) -> int:
        """Whole seconds until one token is back."""
        missing = 1.0 - self._level(key, self.clock())
        return max(1, int(missing / self.per_second + 0.999))


@dataclass
class Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class FailureBackoff:
    """Failures per key. The first FREE cost nothing; each one after blocks the key for FIRST_DELAY,
    doubling with every further failure up to MAX_DELAY, so a block never becomes permanent.
    A key without a failure for FORGET_AFTER seconds starts afresh.

    Keys are kept as digests; the least recently failed are dropped past MAX_KEYS (they are
    also the stalest, so forgotten keys go first).
    """

    def __init__(self, free: int, first_delay: float, max_delay: float, forget_after: float,
                 max_keys: int = 20_000, clock: Clock = time.monotonic):
        self.free = free
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.clock = clock
        self.rows: BoundedTable[bytes, Failures] = BoundedTable(max_keys)

    def _recent(self, key: str, now: float) -> Failures | None:
        row = self.rows.get(digest(key))
        if row is None or now - row.last > self.forget_after:
            return None
        return row

    def blocked_for(self, key: str) -> float:
        """Seconds before KEY may try again; 0 when it may now."""
        now = self.clock()
        row = self._recent(key, now)
        return max(0.0, row.blocked_until - now) if row is not None else 0.0

    def failures(self, key: str) -> int:
        """Failures of KEY not yet forgotten."""
        row = self._recent(key, self.clock())
        return row.count if row is not None else 0

    def failed(self, key: str) -> None:
        now = self.clock()
        row = self._recent(key, now) or Failures()
        row.count += 1
        row.last = now
        beyond = row.count - self.free
        if beyond > 0:
            row.blocked_until = now + min(self.max_delay, self.first_delay * 2 ** min(beyond - 1, MAX_DOUBLINGS))
        self.rows.put(digest(key), row)

    def forget(self, key: str) -> None:
        self.rows.pop(digest(key))
