"""Starting ElastAlert: no burst of old alerts, no repeat after a restart, `run` as a supervised process, lint."""
from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess

import requests

from alerts.writeback import SUFFIXES
from tests.integration.alerts_support import alert_site, jsonlog_line, now, texts  # noqa: F401 (fixture)
from tests.integration.logging_support import ASCI, wait_until

MIN = dt.timedelta(minutes=1)


def refused(user: str, ip: str, at: dt.datetime) -> str:
    return jsonlog_line("registry", "warning", "registry token refused", at=at, user=user, source_ip=ip,
                        reason="wrong user or password")


def test_old_history_fires_nothing_and_a_restart_repeats_nothing(alert_site, stack):
    config = alert_site.configure(["brute-force-account", "component-errors"])
    t = now()
    # Yesterday's kind of trouble: an attack 40 minutes ago, errors 30 minutes ago (older than the buffer).
    alert_site.emit("registry", [refused("mallory", "198.51.100.7", t - 40 * MIN) for _ in range(30)], level="warning")
    alert_site.emit("autobuild", [jsonlog_line("autobuild", "error", "worker error", at=t - 30 * MIN)
                                  for _ in range(20)], level="error")
    alert_site.ship()
    first = alert_site.passes(config)
    first.run_once()
    assert alert_site.receiver.messages == []

    alert_site.emit("registry", [refused("eve", "198.51.100.9", now()) for _ in range(10)], level="warning")
    alert_site.ship()
    first.run_once()
    assert [title for title, _ in texts(alert_site.receiver)] == ["ASCI: many failed logins for one account"]

    # ElastAlert restarted: it resumes after its last pass (writeback index), so nothing is sent again.
    # A real restart takes longer than the engine's 1 s refresh; here the refresh is asked for.
    requests.post(f"{stack.search_url}/{alert_site.writeback}*/_refresh", timeout=30).raise_for_status()
    again = alert_site.passes(config)
    again.run_once()
    assert len(alert_site.receiver.messages) == 1


def test_run_is_a_process_that_pages_and_stops_cleanly(alert_site, stack):
    alert_site.configure(["build-failed"], run_every_seconds=1.0)
    alert_site.emit("autobuild", [jsonlog_line("autobuild", "error", "build finished", at=now(), build_id=7,
                                               repository="BL/mx", tag="v2.0.1", outcome="failure", stage="push",
                                               error="registry unavailable", duration_s=3.0)], level="error")
    alert_site.ship()
    log_path = alert_site.tmp_path / "alerts.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([ASCI, "-c", str(alert_site.config_path), "alerts", "run"],
                                stdout=subprocess.DEVNULL, stderr=out)
    try:
        # ElastAlert staggers each rule's first pass by up to 15 s.
        wait_until(lambda: alert_site.receiver.messages, 60, what="the Slack post")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: build failed" and text.startswith("Build 7 of *BL/mx* tag *v2.0.1* failed in stage *push*")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert {line["component"] for line in lines if "rules loaded" in line["message"]} == {"alerts"}
    assert lines[-1]["message"] == "alerts stopped" and lines[-1]["signal"] == "SIGTERM"
    assert any(line["message"] == "Alert 'build-failed' sent to Slack" for line in lines)
    assert alert_site.receiver.url not in log_path.read_text()   # the webhook URL is a secret
    for suffix in SUFFIXES:
        assert requests.head(f"{stack.search_url}/{alert_site.writeback}{suffix}", timeout=10).status_code == 200


def test_lint_passes_the_shipped_rules_and_names_a_broken_one(tmp_path):
    shipped = subprocess.run([ASCI, "alerts", "lint"], capture_output=True, text=True, timeout=120)
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.startswith("11 rules valid: brute-force-account, brute-force-address, build-failed, ")

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "too-eager.yaml").write_text("name: too-eager\ntype: frequency\nindex: asci-logs-*\n"
                                          "timeframe: {minutes: 5}\nfilter: [{term: {log.level: error}}]\n")
    config = tmp_path / "asci.yaml"
    config.write_text(f"alerts:\n  rules_dir: {rules}\n")
    broken = subprocess.run([ASCI, "-c", str(config), "alerts", "lint"], capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert broken.stderr == f"{rules / 'too-eager.yaml'}: invalid rule: 'num_events' is a required property\n"

    config.write_text("alerts:\n  rules: [no-such-rule]\n")
    unknown = subprocess.run([ASCI, "-c", str(config), "alerts", "lint"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and len(unknown.stderr.splitlines()) == 1
    assert "alerts.rules[0]: no rule named 'no-such-rule'" in unknown.stderr
