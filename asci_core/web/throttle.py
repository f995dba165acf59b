"""Login back-off per account and per client address.

Every wrong password counts against both keys. Past a free allowance the key is
locked for a delay that doubles with each further failure, up to a ceiling: an
attacker gets a few guesses an hour, while the real user — once the delay has
passed — still logs in (a lock never becomes permanent, so nobody can lock a
colleague out for good by typing their name). Unknown names are throttled the
same way as known ones: the answers reveal nothing about who exists.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginBackoff:
    # Addresses are shared (NAT, a facility's proxy): they get a larger allowance than one account.
    ADDRESS_FACTOR = 4
    MAX_KEYS = 100_000

    def __init__(self, allowance: int, first_delay: float, max_delay: float,
                 clock: Callable[[], float] = time.monotonic):
        self.allowance = allowance
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}

    def wait_for(self, account: str, address: str) -> float:
        """Seconds until an attempt for ACCOUNT from ADDRESS is heard; 0 when it may go ahead now."""
        now = self.clock()
        waits = [r.locked_until - now for r in (self._records.get(("account", account)),
                                                 self._records.get(("address", address))) if r is not None]
        return max([0.0, *waits])

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        self._count(("account", account), self.allowance, now)
        self._count(("address", address), self.allowance * self.ADDRESS_FACTOR, now)

    def succeeded(self, account: str) -> None:
        # The address keeps its count: one valid account must not reset a spray from that address.
        self._records.pop(("account", account), None)

    def _count(self, key: tuple[str, str], allowance: int, now: float) -> None:
        record = self._records.get(key)
        if record is None:
            if len(self._records) >= self.MAX_KEYS:
                self._forget_quiet(now)
            record = self._records[key] = _Record()
        elif now - record.last > self.max_delay * 4:
            record.failures = 0  # a long quiet spell starts over
        record.failures += 1
        record.last = now
        beyond = record.failures - allowance
        if beyond >= 0:
            record.locked_until = now + min(self.max_delay, self.first_delay * 2 ** min(beyond, 40))

    def _forget_quiet(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if r.locked_until <= now]:
            del self._records[key]
