"""The shipper's pure decisions, with a fake clock and fake clients: no engine, no threads, no sleeping.

- `bulk.classify`: what becomes of each document of a `_bulk` answer.
- `MissingPipelines`: documents refused with "pipeline does not exist" wait while the engine is
  still recovering its cluster state, and for `grace` seconds once it has recovered.
- `Delivery`: the two together, driven by a scripted engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from asci_core.stack.search_engine import Readiness
from asci_logging.bulk import BulkOutcome, Rejection, BulkTransientError, classify
from asci_logging.delivery import Backoff, Delivery, MissingPipelines
from asci_logging.documents import Doc
from asci_logging.metrics import Metrics

MISSING = {"type": "illegal_argument_exception", "reason": "pipeline with id [logs-session] does not exist"}
CONFLICT = {"type": "mapper_parsing_exception", "reason": "failed to parse field [asci.fields.x]"}


def doc(n: int, pipeline: str = "logs-session") -> Doc:
    return Doc(f"id{n}", "logs-session-2026.12.02", pipeline, b'{"index":{}}\n', b'{"message":"m%d"}\n' % n,
               1_764_651_600_000_000 + n)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Search:
    """The engine's cluster state as the shipper sees it; `recovered_at` on the fake clock."""

    clock: Clock
    recovered_at: float = 0.0
    red_index: bool = False  # health red for a lost primary, the cluster state itself recovered
    calls: int = 0

    def readiness(self) -> Readiness:
        self.calls += 1
        if self.clock.now < self.recovered_at:
            return Readiness(False, False, "cluster state not recovered yet (health red, HTTP 503)")
        if self.red_index:
            return Readiness(False, True, "cluster health red with its state recovered")
        return Readiness(True, True, "health green")


# --- classify ---------------------------------------------------------------------------------------

def item(status: int, error: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"status": status}
    if error:
        result["error"] = error
    return {"index": result}


def test_classify_without_errors_counts_everything_indexed():
    assert classify([doc(1), doc(2)], {"errors": False}) == BulkOutcome(indexed=2)


def test_classify_retries_pushback_and_server_errors_and_rejects_the_rest():
    docs = [doc(i) for i in range(6)]
    outcome = classify(docs, {"errors": True, "items": [
        item(201), item(429), item(503), item(400, CONFLICT), item(200), {"create": {"error": MISSING}}]})
    assert outcome.indexed == 2
    # An item without a status is the engine's failure, not the document's: sent again.
    assert outcome.retry == [docs[1], docs[2], docs[5]]
    assert outcome.rejected == [Rejection(docs[3], 400, CONFLICT)]


def test_classify_refuses_an_answer_that_does_not_match_the_request():
    with pytest.raises(BulkTransientError):
        classify([doc(1), doc(2)], {"errors": True, "items": [item(201)]})


# --- MissingPipelines -------------------------------------------------------------------------------

def missing(n: int = 1) -> Rejection:
    return Rejection(doc(n), 400, MISSING)


def test_a_recovering_engine_holds_documents_for_as_long_as_it_takes():
    clock = Clock()
    search = Search(clock, recovered_at=clock.now + 3600)
    pipelines = MissingPipelines(search, grace=5.0, max_backoff=2.0, clock=clock)
    for _ in range(1800):  # an hour of retries two seconds apart: never a dead letter
        assert pipelines.hold(missing(), clock.now)
        clock.now += 2.0
    # Recovered and the pipeline still missing: now the grace runs, from the recovery on.
    assert pipelines.hold(missing(), clock.now)
    clock.now += 4.9
    assert pipelines.hold(missing(), clock.now)
    clock.now += 0.2
    assert not pipelines.hold(missing(), clock.now)


def test_a_pipeline_missing_from_a_recovered_cluster_waits_only_the_grace():
    clock = Clock()
    pipelines = MissingPipelines(Search(clock), grace=5.0, max_backoff=2.0, clock=clock)
    held = []
    for _ in range(5):
        held.append(pipelines.hold(missing(), clock.now))
        clock.now += 2.0
    assert held == [True, True, True, False, False]


def test_a_refusal_answered_late_by_a_recovering_node_does_not_start_the_grace():
    clock = Clock()
    search = Search(clock, recovered_at=clock.now + 30)
    pipelines = MissingPipelines(search, grace=5.0, max_backoff=2.0, clock=clock)
    sent = clock.now + 29  # a request that left just before the recovery ...
    clock.now += 40  # ... and was answered ten seconds after it, by a busy node
    for _ in range(10):
        assert pipelines.hold(missing(), sent)
        clock.now += 2.0
    # Requests sent since the recovery was seen are judged by the grace.
    sent = clock.now
    assert pipelines.hold(missing(), sent)
    clock.now += 5.0
    assert not pipelines.hold(missing(), clock.now)


def test_a_red_index_is_no_recovery_to_wait_for():
    # Health red for good (an index lost its primary) must not hold a really missing pipeline forever.
    clock = Clock()
    pipelines = MissingPipelines(Search(clock, red_index=True), grace=5.0, max_backoff=2.0, clock=clock)
    assert pipelines.hold(missing(), clock.now)
    clock.now += 5.0
    assert not pipelines.hold(missing(), clock.now)


def test_a_long_silence_starts_a_new_episode():
    clock = Clock()
    pipelines = MissingPipelines(Search(clock), grace=5.0, max_backoff=2.0, clock=clock)
    assert pipelines.hold(missing(), clock.now)
    clock.now += 6.0
    assert not pipelines.hold(missing(), clock.now)
    clock.now += 7.1  # longer than grace + the longest back-off: that episode is over
    assert pipelines.hold(missing(), clock.now)


def test_a_crash_in_the_middle_of_a_grace_restarts_it_after_recovery():
    clock = Clock()
    search = Search(clock)
    pipelines = MissingPipelines(search, grace=5.0, max_backoff=2.0, clock=clock)
    assert pipelines.hold(missing(), clock.now)
    clock.now += 4.0
    search.recovered_at = clock.now + 100  # the engine goes down and comes back slowly
    for _ in range(50):
        assert pipelines.hold(missing(), clock.now)
        clock.now += 2.0
    assert pipelines.hold(missing(), clock.now)  # recovered at +100: a fresh grace, not the 4 s left over
    clock.now += 4.0
    assert pipelines.hold(missing(), clock.now)


def test_other_rejections_are_not_held_and_one_look_serves_a_whole_batch():
    clock = Clock()
    search = Search(clock, recovered_at=clock.now + 60)
    pipelines = MissingPipelines(search, grace=5.0, max_backoff=2.0, clock=clock)
    assert not pipelines.hold(Rejection(doc(1), 400, CONFLICT), clock.now)
    assert not pipelines.hold(Rejection(doc(1), 400, {"reason": "pipeline with id [x] does not exist, or so"}), clock.now)
    assert search.calls == 0
    assert all(pipelines.hold(missing(n), clock.now) for n in range(2000))
    assert search.calls == 1


# --- Delivery, driven by a scripted engine ----------------------------------------------------------

class Abort:
    """Stands for the shutdown event: waiting advances the fake clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waited: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.waited.append(seconds)
        self.clock.now += seconds
        return False


@dataclass
class Engine:
    """`_bulk` as a restarted node answers it: pipelines unknown until `loaded_at` (None: never)."""

    clock: Clock
    loaded_at: float | None
    sent: list[list[Doc]] = field(default_factory=list)

    def send(self, docs: list[Doc]) -> BulkOutcome:
        self.sent.append(list(docs))
        outcome = BulkOutcome()
        for d in docs:
            if d.pipeline == "_none" or (self.loaded_at is not None and self.clock.now >= self.loaded_at):
                outcome.indexed += 1
            else:
                outcome.rejected.append(Rejection(d, 400, MISSING))
        return outcome


def delivery(clock: Clock, engine: Engine, search: Search, grace: float = 5.0) -> tuple[Delivery, Metrics, Abort]:
    metrics = Metrics(None)
    abort = Abort(clock)
    backoff = Backoff(0.5, 2.0)
    d = Delivery(engine, backoff, metrics, lambda us: "logs-deadletter-2026.12.02", abort,  # type: ignore[arg-type]
                 MissingPipelines(search, grace, backoff.maximum, clock=clock))
    return d, metrics, abort


def test_a_slow_recovery_sends_nothing_to_the_dead_letters():
    clock = Clock()
    # Health turns yellow after 50 s; the node knows its pipelines from then on.
    engine = Engine(clock, loaded_at=clock.now + 50)
    d, metrics, abort = delivery(clock, engine, Search(clock, recovered_at=clock.now + 50))
    d.deliver([doc(1), doc(2)])
    counters = metrics.snapshot()
    assert counters["events_sent"] == 2 and counters["events_failed"] == 0
    assert all(x.pipeline != "_none" for batch in engine.sent for x in batch)
    assert sum(abort.waited) >= 50 and max(abort.waited) <= 2.0


def test_a_pipeline_really_missing_ends_in_the_dead_letters_after_the_grace():
    clock = Clock()
    engine = Engine(clock, loaded_at=None)
    d, metrics, abort = delivery(clock, engine, Search(clock))
    start = clock.now
    d.deliver([doc(1), doc(2)])
    counters = metrics.snapshot()
    assert counters["events_sent"] == 0 and counters["events_failed"] == 2
    assert [x.pipeline for x in engine.sent[-1]] == ["_none", "_none"]
    assert 5.0 <= clock.now - start <= 5.0 + 2.0
