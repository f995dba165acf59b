"""Turning the engine's stats answers into a node's measured usage."""
from __future__ import annotations

from asci_core.launcher.inventory import Capacity, Reservation, node_loads
from asci_core.launcher.usage import NodeUsage, Reading, UsageSampler, UsageTracker, parse_engine_time, \
    reading_from_stats

GiB = 1024 ** 3


def stats(cpu_ns: int, read: str, usage: int, **memory_detail: int) -> dict:
    """The parts of a /containers/{id}/stats?one-shot=true answer the sampler reads."""
    return {"read": read, "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}},
            "memory_stats": {"usage": usage, "stats": memory_detail}}


def test_engine_times_keep_their_nanoseconds_and_offsets():
    assert parse_engine_time("2026-12-02T07:51:16.66150885Z") - parse_engine_time("2026-12-02T07:51:16Z") == \
        __import__("pytest").approx(0.66150885)
    assert parse_engine_time("2026-12-02T08:51:16+01:00") == parse_engine_time("2026-12-02T07:51:16Z")
    # The zero time is what the engine sends for a container that is not running.
    for text in ("0001-01-01T00:00:00Z", "", "yesterday"):
        assert parse_engine_time(text) is None


def test_memory_in_use_leaves_out_the_inactive_page_cache_v1_and_v2():
    v1 = reading_from_stats(stats(5, "2026-12-02T07:51:16Z", 300 * 2 ** 20, total_inactive_file=100 * 2 ** 20,
                                  inactive_file=1))
    v2 = reading_from_stats(stats(5, "2026-12-02T07:51:16Z", 300 * 2 ** 20, inactive_file=100 * 2 ** 20))
    assert v1.memory == v2.memory == 200 * 2 ** 20


def test_a_container_that_is_not_running_gives_no_reading():
    assert reading_from_stats({"read": "0001-01-01T00:00:00Z", "cpu_stats": {}, "memory_stats": {}}) is None
    assert reading_from_stats(stats(5, "0001-01-01T00:00:00Z", 0)) is None


def test_cpu_is_a_rate_between_two_readings_of_the_same_container():
    tracker = UsageTracker()
    first = tracker.update({"a": Reading(1_000_000_000, 100.0, GiB), "b": Reading(0, 100.0, GiB)}, at=1.0)
    # A first reading has nothing to compare with: memory counts, CPU not yet.
    assert (first.cpus, first.memory, first.containers) == (0.0, 2 * GiB, 2)
    second = tracker.update({"a": Reading(2_500_000_000, 102.0, GiB), "b": Reading(500_000_000, 102.0, GiB)}, at=2.0)
    assert second.cpus == 1.0  # a: 1.5 s of CPU in 2 s, b: 0.5 s in 2 s
    # b is gone, c is new: neither adds CPU; a restarted container (counter went back) adds none either.
    third = tracker.update({"a": Reading(1_000, 104.0, GiB), "c": Reading(9_000_000_000, 104.0, GiB)}, at=3.0)
    assert (third.cpus, third.containers) == (0.0, 2)


def test_node_loads_carry_the_measurement_of_each_node():
    capacities = {"a": Capacity(4, 16 * GiB, 0), "b": Capacity(4, 16 * GiB, 0)}
    loads = {n.name: n for n in node_loads(capacities, [Reservation("s", "a", "u", "e", 1, GiB)], {},
                                           {"a": NodeUsage(2.5, 3 * GiB, 4, 50.0)})}
    assert (loads["a"].measured_cpus, loads["a"].measured_memory, loads["a"].measured_at) == (2.5, 3 * GiB, 50.0)
    assert (loads["a"].used_cpus, loads["a"].used_memory) == (2.5, 3 * GiB)
    assert loads["b"].measured_at is None and loads["b"].used_cpus == 0


def test_measurements_too_old_to_act_on_are_left_out():
    sampler = UsageSampler(["a", "b"], call=lambda name, fn: None, is_down=lambda name: False, interval=10)
    sampler._latest = {"a": NodeUsage(1, 1, 1, at=1000.0), "b": NodeUsage(1, 1, 1, at=960.0)}
    assert set(sampler.snapshot(now=1010.0)) == {"a"}  # b is 50 s old, three intervals are 30 s


def test_no_sampler_threads_when_sampling_is_off():
    sampler = UsageSampler(["a"], call=lambda name, fn: None, is_down=lambda name: False, interval=0)
    sampler.start()
    assert sampler._threads == [] and sampler.snapshot() == {}
