from __future__ import annotations

import pytest

from autobuild.payloads import PayloadError, foreign_link, parse_push, verify_signature
from tests.integration.autobuild_support import cloud_payload, server_payload, sign

SHA = "a" * 40


def test_server_tag_add():
    push = parse_push("repo:refs_changed", server_payload("BL/base", "v1.0.0", SHA))
    assert push.repository == "BL/base"
    (change,) = push.changes
    assert (change.kind, change.name, change.action, change.commit) == ("tag", "v1.0.0", "add", SHA)


def test_server_tag_delete_has_no_commit():
    (change,) = parse_push("repo:refs_changed", server_payload("BL/base", "v1.0.0", None, change="DELETE")).changes
    assert change.action == "delete" and change.commit is None


def test_cloud_tag_and_branch_and_deletion():
    assert parse_push("repo:push", cloud_payload("ws/app", "1.0.0", SHA)).changes[0].commit == SHA
    branch = parse_push("repo:push", cloud_payload("ws/app", "main", SHA, kind="branch")).changes[0]
    assert branch.kind == "branch"
    gone = parse_push("repo:push", cloud_payload("ws/app", "1.0.0", None, closed=True)).changes[0]
    assert gone.action == "delete" and gone.commit is None


@pytest.mark.parametrize("event,payload,message", [
    ("repo:refs_changed", [], "payload must be a JSON object"),
    ("repo:refs_changed", {"repository": {"slug": "x"}}, "payload has no repository.project"),
    ("repo:push", {"repository": {"full_name": "ws/app"}}, "payload has no push"),
    ("repo:push", {"repository": {"full_name": "ws/app"}, "push": {"changes": [{"new": None, "old": None}]}},
     "push.changes[0] has neither new nor old"),
    ("repo:fork", {}, "unsupported event 'repo:fork'"),
])
def test_bad_payloads(event, payload, message):
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_push(event, payload)


def test_signature_is_checked_against_the_exact_body():
    body = b'{"a": 1}'
    assert verify_signature(body, sign(body, "s"), "s")
    assert not verify_signature(body + b" ", sign(body, "s"), "s")
    assert not verify_signature(body, sign(body, "other"), "s")
    assert not verify_signature(body, sign(body, "s").replace("sha256=", "sha1="), "s")
    assert not verify_signature(body, None, "s")


def test_foreign_links_are_found():
    push = parse_push("repo:refs_changed", server_payload("BL/base", "v1", SHA, host="https://evil.example"))
    assert foreign_link(push, "https://bitbucket.site") == "https://evil.example/scm/bl/base.git"
    assert foreign_link(push, "https://evil.example") is None
