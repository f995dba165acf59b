"""Intake's decisions without a process, a thread or a disk: a fake store in memory."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import Future

import pytest

import autobuild.intake as intake_module
from asci_core.config_base import Secret
from autobuild.intake import Intake
from autobuild.payloads import RefChange
from autobuild.settings import AutobuildSettings, BitbucketHostSettings, RepositorySettings
from autobuild.store import SCHEMA, Release
from tests.integration.autobuild_support import server_payload, sign

HOST = BitbucketHostSettings(name="bitbucket", kind="server", url="https://bitbucket.test.invalid",
                             clone_url="file:///srv/git/{project}/{slug}.git")
C1, C2, OBJ = "1" * 40, "2" * 40, "3" * 40


def repo(name: str = "P/app", secret: str = "s3cret", **kw) -> RepositorySettings:
    return RepositorySettings(name=name, webhook_secret=Secret(secret, "test"), **kw)


class FakeStore:
    """The two things Intake asks of the store: releases of tags, and one write (run at once, in memory)."""

    def __init__(self, releases: dict[str, list[Release]] | None = None):
        self._releases = releases or {}
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.executescript(SCHEMA)
        self.release_lookups: list[tuple[str, list[str]]] = []

    def releases(self, repository: str, tags: list[str]) -> dict[str, list[Release]]:
        self.release_lookups.append((repository, tags))
        return {t: self._releases[t] for t in tags if t in self._releases}

    def submit(self, op) -> Future:
        future: Future = Future()
        future.set_result(op(self.conn))
        return future


def make(*repos: RepositorySettings, releases=None, moved=None) -> tuple[Intake, FakeStore]:
    store = FakeStore(releases)
    settings = AutobuildSettings(hosts=[HOST], repositories=list(repos or [repo()]))
    return Intake(settings, store, on_tag_moved=moved), store  # type: ignore[arg-type]


def headers(body: bytes, secret: str = "s3cret", event: str = "repo:refs_changed", rid: str = "d1") -> dict:
    return {"X-Event-Key": event, "X-Hub-Signature": sign(body, secret), "X-Request-Id": rid}


def body_of(payload) -> bytes:
    payload["repository"]["links"]["clone"][0]["href"] = "https://bitbucket.test.invalid/scm/p/app.git"
    return json.dumps(payload).encode()


def receive(intake: Intake, hdrs: dict, body: bytes, repository: str | None = None):
    return asyncio.run(intake.receive(hdrs, body, repository))


# --- _decide: pure --------------------------------------------------------------------------------


def test_decide_ignores_branches_and_deletions_and_refuses_bad_tags():
    intake, _ = make()
    outcomes, builds = intake._decide(repo(), (
        RefChange("branch", "main", "update", C1),
        RefChange("tag", "v1.0.0", "delete", None),
        RefChange("tag", "v1;rm -rf /", "add", C1),
        RefChange("tag", "v1.0.0", "add", C1),
        RefChange("tag", "v1.0.0", "add", C1),  # the same change twice in one push: one build
    ), "d1")
    assert [o["result"] for o in outcomes] == ["ignored", "ignored", "refused", "queued", "queued"]
    assert [b.dedupe_key for b in builds] == ["tag:p/app:v1.0.0:" + C1]


def test_decide_refuses_a_moved_release_and_accepts_its_commit_or_tag_object():
    released = {"v1.0.0": [Release(7, C1, OBJ)]}
    intake, _ = make()
    moved, builds = intake._decide(repo(), (RefChange("tag", "v1.0.0", "update", C2),), "d1", released)
    assert moved[0]["result"] == "refused" and builds == []
    assert moved[0]["released_commit"] == C1 and moved[0]["released_build"] == 7
    assert "releases are immutable" in moved[0]["reason"]
    for delivered in (C1, OBJ):  # Server sends the tag object, Cloud the commit: both are the release
        same, builds = intake._decide(repo(), (RefChange("tag", "v1.0.0", "add", delivered),), "d1", released)
        assert same[0]["result"] == "queued" and len(builds) == 1


def test_decide_lets_a_mutable_repository_move_a_tag():
    intake, _ = make(repo(immutable_tags=False))
    outcomes, builds = intake._decide(repo(immutable_tags=False), (RefChange("tag", "v1.0.0", "update", C2),),
                                      "d1", {"v1.0.0": [Release(7, C1, None)]})
    assert outcomes[0]["result"] == "queued" and builds[0].commit_sha == C2


# --- receive: signature first, one answer for everything unsigned ----------------------------------------


def test_nothing_is_parsed_before_a_signature_matches(monkeypatch):
    parsed = []
    real = intake_module.load_body
    monkeypatch.setattr(intake_module, "load_body", lambda b: parsed.append(b) or real(b))
    intake, store = make()
    deep = b"[" * 10_000 + b"]" * 10_000
    answer = receive(intake, headers(deep, secret="wrong"), deep)
    assert (answer.status, answer.body) == (401, {"status": "refused", "reason": "signature does not match"})
    assert parsed == [] and store.release_lookups == []
    signed = receive(intake, headers(deep), deep)
    assert signed.status == 400 and signed.body["reason"] == "body is not valid JSON (nested too deeply)"


def test_unknown_repository_and_bad_signature_answer_alike():
    intake, _ = make(repo("P/app", "s3cret"), repo("P/other", "other-secret"))
    unknown = body_of(server_payload("P/nothere", "v1.0.0", C1))
    bad = receive(intake, headers(unknown, secret="wrong"), unknown)
    cases = [
        receive(intake, headers(unknown), unknown),  # signed with a configured secret, names no configured repo
        receive(intake, headers(unknown), unknown, "P/nothere"),
        # Signed by P/other's secret but naming P/app: not P/app's signature.
        receive(intake, headers(body_of(server_payload("P/app", "v1.0.0", C1)), "other-secret"),
                body_of(server_payload("P/app", "v1.0.0", C1))),
        receive(intake, headers(body_of(server_payload("P/other", "v1.0.0", C1)), "other-secret"),
                body_of(server_payload("P/other", "v1.0.0", C1)), "P/app"),
    ]
    for answer in cases:
        assert (answer.status, answer.body) == (bad.status, bad.body) == (401, {"status": "refused",
                                                                                "reason": "signature does not match"})


def test_repository_url_uses_only_that_repositorys_secret():
    intake, _ = make(repo("P/app", "s3cret"), repo("P/other", "other-secret"))
    body = body_of(server_payload("P/app", "v1.0.0", C1))
    assert receive(intake, headers(body, "other-secret"), body, "P/app").status == 401
    queued = receive(intake, headers(body), body, "p/APP")  # names are case-insensitive, as Bitbucket's keys
    assert queued.status == 202 and queued.body["status"] == "queued"


def test_moved_tag_is_refused_and_announced_once_per_delivery():
    announced = []
    intake, _ = make(releases={"v1.0.0": [Release(3, C1, None)]}, moved=lambda r, e: announced.append((r, e)))
    body = body_of(server_payload("P/app", "v1.0.0", C2, change="UPDATE"))
    first = receive(intake, headers(body, rid="m1"), body)
    assert first.status == 422 and first.body["changes"][0]["result"] == "refused"
    again = receive(intake, headers(body, rid="m1"), body)
    assert again.status == 200 and again.body["duplicate"] is True
    assert len(announced) == 1 and announced[0][0] == "P/app" and announced[0][1]["commit"] == C2


def test_release_lookup_is_skipped_for_mutable_repositories():
    intake, store = make(repo(immutable_tags=False))
    body = body_of(server_payload("P/app", "v1.0.0", C1))
    assert receive(intake, headers(body), body).status == 202
    assert store.release_lookups == []


@pytest.mark.parametrize("event", ["diagnostics:ping"])
def test_ping_needs_a_configured_secret(event):
    intake, _ = make()
    body = b'{"test": true}'
    assert receive(intake, headers(body, event=event), body).status == 200
    assert receive(intake, headers(body, "wrong", event=event), body).status == 401
    assert receive(intake, headers(body, event=event), body, "P/nothere").status == 401
