"""Failed logins (the registry token service's lines) → journald → shipper → pipelines → ElastAlert → Slack.

Brute force per account and per client address, and credential stuffing (many accounts from one
address): each fires once for the attack, stays quiet just under its threshold, and a storm
inside `realert` stays one message.
"""
from __future__ import annotations

import subprocess

from tests.integration.alerts_support import alert_site, jsonlog_line, now, texts  # noqa: F401 (fixture)
from tests.integration.logging_support import ASCI


def refused(user: str, ip: str) -> str:
    # What registry/token_service.py logs for a wrong user or password.
    return jsonlog_line("registry", "warning", "registry token refused", at=now(), user=user, source_ip=ip,
                        reason="wrong user or password")


def test_brute_force_and_credential_stuffing(alert_site):
    config = alert_site.configure(["brute-force-account", "brute-force-address", "credential-stuffing"])
    lines = [refused("mallory", "198.51.100.7") for _ in range(25)]          # 2.5 x the account threshold
    lines += [refused("alice", "198.51.100.8") for _ in range(9)]             # one under it
    lines += [refused(f"user{i}", "203.0.113.9") for i in range(6)]           # 6 accounts > 5
    lines += [refused(f"guest{i}", "203.0.113.10") for i in range(5)]         # 5 accounts: not more than 5
    alert_site.emit("registry", lines, level="warning")
    alert_site.ship()

    passes = alert_site.passes(config)
    passes.run_once()
    posted = sorted(texts(alert_site.receiver))
    assert [title for title, _ in posted] == ["ASCI: many failed logins for one account",
                                              "ASCI: many failed logins from one address",
                                              "ASCI: one address trying many accounts"]
    account, address, stuffing = (text for _, text in posted)
    assert account.startswith("Account *mallory*: at least 10 failed logins within 0:05:00 up to ")
    assert "last from 198.51.100.7 (registry: registry token refused)" in account
    assert f'`event.category:authentication AND event.outcome:failure AND user.name:"mallory"` in index ' \
           f'{alert_site.logs.prefix}-*' in account
    assert address.startswith("Client address *198.51.100.7*: at least 20 failed logins within 0:05:00 up to ")
    assert stuffing.startswith("Client address *203.0.113.9* failed to log in as 6 different accounts (more than 5) "
                               "within 0:10:00 up to ")
    assert "Accounts tried most: {'user0': 1, 'user1': 1, 'user2': 1, 'user3': 1, 'user4': 1}" in stuffing
    fields = {a["title"]: {f["title"]: f["value"] for f in a["fields"]}
              for m in alert_site.receiver.messages for a in m["attachments"]}
    assert fields["ASCI: many failed logins for one account"] == {"Account": "mallory",
                                                                  "Last client address": "198.51.100.7"}
    assert all(m["username"] == "ASCI alerts" for m in alert_site.receiver.messages)

    # The attack goes on: still inside realert, so no second message.
    alert_site.emit("registry", [refused("mallory", "198.51.100.7") for _ in range(15)], level="warning")
    alert_site.ship()
    passes.run_once()
    assert len(alert_site.receiver.messages) == 3

    # `asci alerts test` shows the same message and sends nothing.
    result = subprocess.run([ASCI, "-c", str(alert_site.config_path), "alerts", "test", "brute-force-account"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== ASCI: many failed logins for one account" in result.stdout
    assert "Account *mallory*: at least 10 failed logins" in result.stdout
    # 40 failed logins for mallory are 4 matches of 10; realert makes them one message.
    assert "brute-force-account: 4 match(es), 1 message(s) would be sent" in result.stderr
    assert len(alert_site.receiver.messages) == 3
