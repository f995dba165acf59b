"""Failed-login throttling for the token service, and a bounded, prioritised gate for bcrypt.

Each failed login counts against the client address and against the account name
asked for (whether or not it exists, so the answers reveal nothing). Past a free
allowance a key is blocked for an exponentially growing time. An account block
applies only to addresses that failed recently themselves and never logged in to
that account: a flood against `autobuild` must not lock out autobuild itself or a
new node with the right password, while an attacker spreading guesses over many
addresses gets one guess per address, not one per address per back-off.

bcrypt costs ~0.25 s of CPU, so checks are capped at a few at a time; requests
from addresses with recent failures wait in a lower lane and are shed when that
lane is full, so an honest login waits for at most the checks already running.

The counting per key is asci_core.throttle's FailureBackoff; this module adds the policy.
"""
from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from asci_core.errors import AsciError
from asci_core.throttle import BoundedTable, FailureBackoff, digest

T = TypeVar("T")


@dataclass(frozen=True)
class ThrottlePolicy:
    free_per_address: int = 20  # failures an address may make before it is slowed down
    free_per_account: int = 10
    first_block: float = 1.0  # seconds; doubles with every further failure
    max_block_address: float = 300.0
    max_block_account: float = 60.0  # shorter: an account block also delays its honest new clients
    forget_after: float = 900.0  # a key quiet this long starts afresh
    trust_for: float = 86400.0  # a successful (account, address) pair skips the account block this long
    max_keys: int = 20000  # memory bound: oldest entries are dropped first


class LoginThrottle:
    def __init__(self, policy: ThrottlePolicy = ThrottlePolicy(), clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.clock = clock
        p = policy
        self._addresses = FailureBackoff(p.free_per_address, p.first_block, p.max_block_address, p.forget_after,
                                  p.max_keys, clock)
        self._accounts = FailureBackoff(p.free_per_account, p.first_block, p.max_block_account, p.forget_after,
                                 p.max_keys, clock)
        self._trusted: BoundedTable[bytes, float] = BoundedTable(p.max_keys)  # (account, address) -> last success

    def retry_after(self, account: str, address: str) -> float:
        """Seconds before this login may be tried (0: go ahead)."""
        wait = self._addresses.blocked_for(address)
        if self.suspect(address) and not self.trusted(account, address):
            wait = max(wait, self._accounts.blocked_for(account))
        return wait

    def trusted(self, account: str, address: str) -> bool:
        last = self._trusted.get(digest(f"{account}\0{address}"))
        return last is not None and self.clock() - last <= self.policy.trust_for

    def suspect(self, address: str) -> bool:
        """True when ADDRESS failed recently: its checks go to the lower lane."""
        return self._addresses.failures(address) > 0

    def failed(self, account: str, address: str) -> None:
        self._addresses.failed(address)
        self._accounts.failed(account)

    def succeeded(self, account: str, address: str) -> None:
        # Counters are not reset: an attacker with an account of their own could otherwise
        # interleave good logins to keep guessing another account at full speed.
        self._trusted.put(digest(f"{account}\0{address}"), self.clock())


class Overloaded(AsciError):
    """Refused without a check: the lower lane is full, or the request was throttled while it waited."""


class HashGate:
    """At most `slots` bcrypt checks at once, of which at most `suspect_slots` for suspect addresses.

    With one slot kept from suspects, an honest check never waits behind a flood's
    checks; waiting suspects are refused once their lane is full.
    """

    def __init__(self, slots: int | None = None, suspect_slots: int | None = None, max_suspect_waiting: int = 8,
                 max_waiting: int = 256, suspect_rest: float = 3.0):
        self.slots = max(2, slots or (os.cpu_count() or 2))
        self.suspect_slots = max(1, min(suspect_slots or self.slots - 1, self.slots - 1))
        self.max_suspect_waiting = max_suspect_waiting
        self.max_waiting = max_waiting
        # After each suspect check its slot rests SUSPECT_REST times as long as the check took, so
        # however many addresses a flood uses, it gets at most 1/(1+rest) of one core for bcrypt.
        self.suspect_rest = suspect_rest
        self._suspect_resume = 0.0
        self._busy = 0
        self._busy_suspect = 0
        self._normal: collections.deque[asyncio.Future[None]] = collections.deque()
        self._suspect: collections.deque[asyncio.Future[None]] = collections.deque()

    async def run(self, suspect: bool, func: Callable[[], T], admit: Callable[[], bool] = lambda: True) -> T:
        """FUNC in a worker thread once a slot is free; ADMIT is asked again then, since a
        request that queued may have been throttled meanwhile (`Overloaded` if not admitted)."""
        await self._acquire(suspect)
        try:
            loop = asyncio.get_running_loop()
            if suspect and self._suspect_resume > loop.time():
                await asyncio.sleep(self._suspect_resume - loop.time())
            if not admit():
                raise Overloaded()
            started = loop.time()
            try:
                return await asyncio.to_thread(func)
            finally:
                if suspect:
                    self._suspect_resume = loop.time() + (loop.time() - started) * self.suspect_rest
        finally:
            self._release(suspect)

    def _room(self, suspect: bool) -> bool:
        if self._busy >= self.slots:
            return False
        return not suspect or self._busy_suspect < self.suspect_slots

    def _take(self, suspect: bool) -> None:
        self._busy += 1
        self._busy_suspect += suspect

    async def _acquire(self, suspect: bool) -> None:
        lane = self._suspect if suspect else self._normal
        if not lane and self._room(suspect) and (suspect is False or not self._normal):
            self._take(suspect)
            return
        if len(lane) >= (self.max_suspect_waiting if suspect else self.max_waiting):
            raise Overloaded()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(suspect)  # the slot was handed over as the client went away
            elif waiter in lane:
                lane.remove(waiter)
            raise

    def _release(self, suspect: bool) -> None:
        self._busy -= 1
        self._busy_suspect -= suspect
        for lane, is_suspect in ((self._normal, False), (self._suspect, True)):
            while lane and self._room(is_suspect):
                waiter = lane.popleft()
                if not waiter.done():
                    self._take(is_suspect)
                    waiter.set_result(None)
