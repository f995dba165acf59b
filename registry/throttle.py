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
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from asci_core.errors import AsciError

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


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class _Table:
    """Failure records per key, oldest-first, bounded in size."""

    def __init__(self, limit: int):
        self.limit = limit
        self.rows: collections.OrderedDict[bytes, _Failures] = collections.OrderedDict()

    def get(self, key: bytes) -> _Failures | None:
        return self.rows.get(key)

    def touch(self, key: bytes) -> _Failures:
        row = self.rows.pop(key, None) or _Failures()
        self.rows[key] = row
        while len(self.rows) > self.limit:
            self.rows.popitem(last=False)
        return row


def _key(kind: str, value: str) -> bytes:
    # Names can be 60 kB of attacker's text: keep a fixed-size digest, never the name.
    return hashlib.sha256(f"{kind}\0{value}".encode("utf-8", "surrogatepass")).digest()


class LoginThrottle:
    def __init__(self, policy: ThrottlePolicy = ThrottlePolicy(), clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.clock = clock
        self._addresses = _Table(policy.max_keys)
        self._accounts = _Table(policy.max_keys)
        self._trusted = _Table(policy.max_keys)  # (account, address) pairs: `last` is the last success

    def _fresh(self, row: _Failures | None, now: float) -> _Failures | None:
        if row is None or now - row.last > self.policy.forget_after:
            return None
        return row

    def retry_after(self, account: str, address: str) -> float:
        """Seconds before this login may be tried (0: go ahead)."""
        now = self.clock()
        wait = 0.0
        row = self._fresh(self._addresses.get(_key("addr", address)), now)
        if row is not None:
            wait = max(wait, row.blocked_until - now)
        row = self._fresh(self._accounts.get(_key("user", account)), now)
        if row is not None and self.suspect(address) and not self.trusted(account, address):
            wait = max(wait, row.blocked_until - now)
        return max(wait, 0.0)

    def trusted(self, account: str, address: str) -> bool:
        row = self._trusted.get(_key("pair", f"{account}\0{address}"))
        return row is not None and self.clock() - row.last <= self.policy.trust_for

    def suspect(self, address: str) -> bool:
        """True when ADDRESS failed recently: its checks go to the lower lane."""
        row = self._fresh(self._addresses.get(_key("addr", address)), self.clock())
        return row is not None and row.count > 0

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        p = self.policy
        for table, key, free, cap in ((self._addresses, _key("addr", address), p.free_per_address,
                                       p.max_block_address),
                                      (self._accounts, _key("user", account), p.free_per_account,
                                       p.max_block_account)):
            row = table.touch(key)
            if now - row.last > p.forget_after:
                row.count, row.blocked_until = 0, 0.0
            row.count += 1
            row.last = now
            over = row.count - free
            if over > 0:
                row.blocked_until = now + min(cap, p.first_block * 2 ** min(over - 1, 30))

    def succeeded(self, account: str, address: str) -> None:
        # Counters are not reset: an attacker with an account of their own could otherwise
        # interleave good logins to keep guessing another account at full speed.
        self._trusted.touch(_key("pair", f"{account}\0{address}")).last = self.clock()


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
