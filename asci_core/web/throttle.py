"""Login back-off per account and per client address.

Every wrong password counts against both keys. Past a free allowance the key is
locked for a delay that doubles with each further failure, up to a ceiling: an
attacker gets a few guesses an hour, while the real user — once the delay has
passed — still logs in (a lock never becomes permanent, so nobody can lock a
colleague out for good by typing their name). Unknown names are throttled the
same way as known ones: the answers reveal nothing about who exists.
The counting is asci_core.throttle's FailureBackoff, one per kind of key; past
MAX_KEYS the least recently failed keys are forgotten first.
"""
from __future__ import annotations

import time
from typing import Callable

from asci_core.throttle import FailureBackoff


class LoginBackoff:
    # Addresses are shared (NAT, a facility's proxy): they get a larger allowance than one account.
    ADDRESS_FACTOR = 4
    MAX_KEYS = 100_000  # accounts and addresses together

    def __init__(self, allowance: int, first_delay: float, max_delay: float,
                 clock: Callable[[], float] = time.monotonic):
        # The ALLOWANCE-th failure is the first that blocks; four ceilings of quiet start a key afresh.
        def backoff(free: int) -> FailureBackoff:
            return FailureBackoff(free, first_delay, max_delay, forget_after=max_delay * 4,
                           max_keys=self.MAX_KEYS // 2, clock=clock)

        self._accounts = backoff(allowance - 1)
        self._addresses = backoff(allowance * self.ADDRESS_FACTOR - 1)

    def wait_for(self, account: str, address: str) -> float:
        """Seconds until an attempt for ACCOUNT from ADDRESS is heard; 0 when it may go ahead now."""
        return max(self._accounts.blocked_for(account), self._addresses.blocked_for(address))

    def failed(self, account: str, address: str) -> None:
        self._accounts.failed(account)
        self._addresses.failed(address)

    def succeeded(self, account: str) -> None:
        # The address keeps its count: one valid account must not reset a spray from that address.
        self._accounts.forget(account)
