"""Token buckets keyed by a name (a user, a client address): how often something may happen."""
from __future__ import annotations

import time
from typing import Callable


class Buckets:
    """Each key holds up to BURST tokens, refilled at PER_SECOND; taking from an empty bucket fails.

    Keys whose bucket is full again carry no information, so they are dropped when the
    table grows past MAX_KEYS: a flood of distinct keys cannot grow memory without bound.
    """

    def __init__(self, burst: int, per_second: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.burst = float(burst)
        self.per_second = per_second
        self.max_keys = max_keys
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _level(self, key: str, now: float) -> float:
        tokens, when = self._state.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.per_second)

    def take(self, key: str) -> bool:
        now = self.clock()
        tokens = self._level(key, now)
        if tokens < 1.0:
            self._state[key] = (tokens, now)
            return False
        self._state[key] = (tokens - 1.0, now)
        if len(self._state) > self.max_keys:
            self._prune(now)
        return True

    def empty(self, key: str) -> bool:
        """Whether the next take() would fail, without taking."""
        return self._level(key, self.clock()) < 1.0

    def retry_after(self, key: str) -> int:
        """Whole seconds until one token is back."""
        missing = 1.0 - self._level(key, self.clock())
        return max(1, int(missing / self.per_second + 0.999))

    def _prune(self, now: float) -> None:
        for key in [k for k in self._state if self._level(k, now) >= self.burst]:
            del self._state[key]
        if len(self._state) > self.max_keys:  # still full of busy keys: forget the oldest
            for key, _ in sorted(self._state.items(), key=lambda kv: kv[1][1])[: len(self._state) - self.max_keys]:
                del self._state[key]
