"""The login throttle's arithmetic and the bcrypt gate's order, on a clock the test moves."""
from __future__ import annotations

import asyncio

import pytest

from registry.throttle import HashGate, LoginThrottle, Overloaded, ThrottlePolicy
from tests.support.clock import FakeClock


def test_back_off_doubles_past_the_allowance_and_is_forgotten_after_quiet():
    clock = FakeClock()
    t = LoginThrottle(ThrottlePolicy(free_per_address=3, free_per_account=100, first_block=1, forget_after=60), clock)
    for _ in range(3):
        assert t.retry_after("a", "10.0.0.1") == 0
        t.failed("a", "10.0.0.1")
    assert t.retry_after("a", "10.0.0.1") == 0  # the allowance is spent, not exceeded
    blocks = []
    for _ in range(4):
        t.failed("a", "10.0.0.1")
        blocks.append(t.retry_after("b", "10.0.0.1"))  # an address block covers every account
    assert blocks == [1, 2, 4, 8]
    assert t.retry_after("a", "10.0.0.2") == 0
    clock.now += 61
    assert t.retry_after("a", "10.0.0.1") == 0
    t.failed("a", "10.0.0.1")
    assert t.retry_after("a", "10.0.0.1") == 0  # counting starts afresh


def test_an_account_block_spares_clean_and_trusted_addresses():
    clock = FakeClock()
    t = LoginThrottle(ThrottlePolicy(free_per_address=100, free_per_account=2, first_block=5), clock)
    t.succeeded("svc", "10.0.0.9")
    t.failed("svc", "10.0.0.9")  # even a trusted address that mistyped once stays trusted
    for _ in range(2):
        t.failed("svc", "10.0.0.1")  # with the one above: 3 failures, one past the allowance
    assert t.retry_after("svc", "10.0.0.1") == 5
    assert t.retry_after("svc", "10.0.0.9") == 0  # logged in to it before
    assert t.retry_after("svc", "10.0.0.2") == 0  # never failed: a new node with the right password
    t.failed("other", "10.0.0.3")
    assert t.retry_after("svc", "10.0.0.3") == 5  # failed elsewhere: one guess per address


def test_names_are_kept_as_digests_and_the_tables_are_bounded():
    t = LoginThrottle(ThrottlePolicy(max_keys=50))
    for i in range(500):
        t.failed("u" * 60000 + str(i), f"10.0.{i // 250}.{i % 250}")
    assert len(t._accounts.rows) == 50 and len(t._addresses.rows) == 50
    assert all(len(k) == 32 for k in t._accounts.rows)


def test_the_gate_serves_honest_checks_first_and_sheds_suspects():
    order: list[str] = []

    async def scenario() -> None:
        gate = HashGate(slots=2, suspect_slots=1, max_suspect_waiting=2, suspect_rest=0)
        release = asyncio.Event()

        async def check(name: str, suspect: bool) -> None:
            def work() -> bool:
                order.append(name)
                return True
            await gate.run(suspect, work)

        async def hold(name: str, suspect: bool) -> None:
            await gate._acquire(suspect)
            order.append(name)
            await release.wait()
            gate._release(suspect)

        holders = [asyncio.create_task(hold("s0", True)), asyncio.create_task(hold("n0", False))]
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(check("s1", True)), asyncio.create_task(check("s2", True))]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await check("s3", True)  # the suspect lane is full
        waiting.append(asyncio.create_task(check("n1", False)))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*holders, *waiting)
        with pytest.raises(Overloaded):
            await gate.run(False, lambda: True, admit=lambda: False)  # throttled while it waited
        assert gate._busy == 0 and gate._busy_suspect == 0

    asyncio.run(scenario())
    assert order[:2] == ["s0", "n0"] and order.index("n1") < order.index("s1") < order.index("s2")
    assert "s3" not in order
