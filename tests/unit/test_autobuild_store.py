from __future__ import annotations

import time

import pytest

from autobuild.store import (NewBuild, Store, claim_next, insert_builds, record_delivery, requeue_interrupted,
                             retry_build, set_fields, skip_dependents)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ab.db")
    yield s
    s.close()


def new(key: str, image: str = "img", deps: tuple[str, ...] = ()) -> NewBuild:
    return NewBuild(key, "P/r", image, "v1.0.0", "a" * 40, "webhook", depends_on=deps)


def test_the_same_image_is_never_claimed_twice(store):
    store.write(insert_builds([new("a", "img1"), new("b", "img1"), new("c", "img2")]))
    first = store.write(claim_next(time.time()))
    second = store.write(claim_next(time.time()))
    assert {store.get(first).image, store.get(second).image} == {"img1", "img2"}
    assert store.write(claim_next(time.time())) is None  # img1's second build waits
    store.write(set_fields(first, status="succeeded"))
    assert store.write(claim_next(time.time())) is not None


def test_dependencies_hold_back_and_failures_skip_transitively(store):
    ids = store.write(insert_builds([new("p", "p"), new("c", "c", ("p",)), new("g", "g", ("c",))]))
    parent = store.write(claim_next(time.time()))
    assert parent == ids["p"][0]
    assert store.write(claim_next(time.time())) is None
    store.write(set_fields(parent, status="failed"))
    assert sorted(store.write(skip_dependents(parent, "parent failed"))) == [ids["c"][0], ids["g"][0]]
    assert store.get(ids["g"][0]).status == "skipped"


def test_not_before_delays_a_retry(store):
    (bid, _), = store.write(insert_builds([new("a")])).values()
    store.write(set_fields(bid, not_before=time.time() + 60))
    assert store.write(claim_next(time.time())) is None
    assert store.write(claim_next(time.time() + 61)) == bid


def test_interrupted_builds_are_queued_again_and_survive_reopening(tmp_path):
    s = Store(tmp_path / "ab.db")
    s.write(insert_builds([new("a")]))
    bid = s.write(claim_next(time.time()))
    s.close()
    again = Store(tmp_path / "ab.db")
    try:
        assert again.get(bid).status == "running"
        assert again.write(requeue_interrupted()) == [bid]
        assert again.write(claim_next(time.time())) == bid
        assert again.get(bid).attempts == 2
    finally:
        again.close()


def test_a_delivery_is_recorded_once(store):
    detail = [{"ref": "v1.0.0", "result": "queued", "dedupe_key": "a"}]
    first = store.write(record_delivery("d1", "repo:push", "P/r", "queued", [dict(d) for d in detail], [new("a")]))
    again = store.write(record_delivery("d1", "repo:push", "P/r", "queued", [dict(d) for d in detail], [new("a")]))
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["detail"][0]["build_id"] == first["detail"][0]["build_id"]
    assert len(store.list()) == 1


def test_a_failing_write_does_not_sink_its_batch(store):
    def boom(conn):
        raise RuntimeError("bad write")

    bad = store.submit(boom)
    good = store.submit(insert_builds([new("z")]))
    with pytest.raises(RuntimeError):
        bad.result()
    assert "z" in good.result()


def test_only_finished_builds_can_be_retried(store):
    (bid, _), = store.write(insert_builds([new("a")])).values()
    with pytest.raises(ValueError, match="only finished builds"):
        store.write(retry_build(bid))
    store.write(set_fields(bid, status="failed"))
    retry = store.write(retry_build(bid))
    assert store.get(retry).trigger == "retry" and store.get(retry).triggered_by == bid
