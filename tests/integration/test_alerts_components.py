"""ASCI's own lines (errors, failed builds, refused webhooks, exited containers) → the whole path → Slack.

Lines are the exact JSON asci_core.jsonlog writes, sent to journald with the fields Docker's
journald driver sets; the real shipper and ingest pipelines index them; ElastAlert runs for real.
"""
from __future__ import annotations

from tests.integration.alerts_support import alert_site, jsonlog_line, now, texts  # noqa: F401 (fixture)


def test_errors_are_one_message_per_component(alert_site):
    config = alert_site.configure(["component-errors"])
    alert_site.emit("autobuild", [jsonlog_line("autobuild", "error", "worker error", at=now(), build_id=i)
                                  for i in range(12)], level="error")
    alert_site.emit("registry", [jsonlog_line("registry", "error", "registry exited", at=now(), exit_code=1)
                                 for _ in range(4)], level="error")        # one under the threshold
    alert_site.emit("asci_core", [jsonlog_line("asci_core", "info", "session started", at=now()) for _ in range(9)])
    alert_site.ship()

    passes = alert_site.passes(config)
    passes.run_once()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: errors from a component"
    assert text.startswith("*autobuild* logged at least 5 error lines within 0:05:00 up to ")
    assert "Last error: worker error" in text
    assert f"Container {alert_site.container} on " in text
    assert f'`asci.component:"autobuild" AND log.level:(error OR critical)` in index {alert_site.logs.prefix}-*' in text

    # A storm: more errors within realert stay that one message.
    alert_site.emit("autobuild", [jsonlog_line("autobuild", "error", "worker error", at=now()) for _ in range(10)],
                    level="error")
    alert_site.ship()
    passes.run_once()
    assert len(alert_site.receiver.messages) == 1


def failed_build(build_id: int, repository: str, tag: str, stage: str, error: str) -> str:
    # What autobuild/service.py logs when a build fails.
    return jsonlog_line("autobuild", "error", "build finished", at=now(), build_id=build_id, repository=repository,
                        tag=tag, outcome="failure", commit="0123abcd", stage=stage, error=error, duration_s=4.2,
                        trigger="webhook")


def test_a_failed_build_is_one_message_with_its_log_link(alert_site):
    config = alert_site.configure(["build-failed"])
    alert_site.emit("autobuild", [
        jsonlog_line("autobuild", "info", "build finished", at=now(), build_id=41, repository="BL/desktop-base",
                     tag="v1.2.0", outcome="success", duration_s=12.5),
        failed_build(42, "BL/desktop-base", "v1.2.1", "build", "RUN apt-get install foo: exit code 100"),
        jsonlog_line("autobuild", "warning", "build will be retried", at=now(), build_id=43, stage="push",
                     error="registry unavailable", delay=2.0),
    ])
    alert_site.ship()
    passes = alert_site.passes(config)
    passes.run_once()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: build failed"
    first, error, link, query = text.rstrip().splitlines()
    assert first.startswith("Build 42 of *BL/desktop-base* tag *v1.2.1* failed in stage *build* at ")
    assert error == "Error: RUN apt-get install foo: exit code 100"
    assert link == "Build log: http://127.0.0.1:8080/builds/42/log"
    assert query == f'Logs: `build.id:"42"` in index {alert_site.logs.prefix}-autobuild-*'
    fields = {f["title"]: f["value"] for f in alert_site.receiver.messages[0]["attachments"][0]["fields"]}
    assert fields == {"Repository": "BL/desktop-base", "Tag": "v1.2.1", "Failed stage": "build"}

    # The same build's line shipped again (a re-sent batch) and the next pass: still one message.
    alert_site.emit("autobuild", [failed_build(42, "BL/desktop-base", "v1.2.1", "build", "again")])
    alert_site.ship()
    passes.run_once()
    assert len(alert_site.receiver.messages) == 1


def refused_webhook(ip: str) -> str:
    # What autobuild/http.py logs for a 401 answer.
    return jsonlog_line("autobuild", "warning", "webhook refused", at=now(), status=401,
                        reason="signature does not match", client_ip=ip)


def test_webhook_probing(alert_site):
    config = alert_site.configure(["webhook-probing"])
    alert_site.emit("autobuild", [refused_webhook("192.0.2.50") for _ in range(12)] +
                    [refused_webhook("192.0.2.51") for _ in range(4)], level="warning")   # one under
    alert_site.ship()
    alert_site.passes(config).run_once()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: webhook signature failures"
    assert text.startswith("Address *192.0.2.50* sent at least 5 webhooks with a missing or wrong signature "
                           "within 0:10:00 up to ")
    assert "Last reason: signature does not match." in text


def exited(container: str, exit_code: int, oom: bool = False) -> str:
    # The line a component supervising containers logs when one stops (README "Alerts").
    return jsonlog_line("asci_core", "warning", "container exited", at=now(), container=container,
                        exit_code=exit_code, oom_killed=oom, restarts=0, memory_limit="512m", user="alice")


def test_restart_loop_and_oom_kill(alert_site):
    config = alert_site.configure(["container-restart-loop", "container-oom-killed"])
    alert_site.emit("asci_core", [exited("desk-alice", 1) for _ in range(7)]         # a loop, then a storm
                    + [exited("desk-bob", 0) for _ in range(2)]                       # two exits: not a loop
                    + [exited("desk-carol", 137, oom=True)], level="warning")
    alert_site.ship()
    alert_site.passes(config).run_once()
    posted = dict(texts(alert_site.receiver))
    assert set(posted) == {"ASCI: a container is restarting in a loop", "ASCI: a container was killed for memory"}
    assert posted["ASCI: a container is restarting in a loop"].startswith(
        "Container *desk-alice* (asci_core) exited at least 3 times within 0:10:00, last at ")
    assert posted["ASCI: a container was killed for memory"].startswith(
        "Container *desk-carol* (asci_core, user alice) was killed by the kernel for memory at ")
    assert "(limit 512m)" in posted["ASCI: a container was killed for memory"]
