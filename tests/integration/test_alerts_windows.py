"""Rules over time windows: a service gone silent (flatline) and spikes, with history written in the past.

Lines carry their own past timestamps (the pipelines use the line's time), and ElastAlert starts
its first pass far enough back to see the whole window, as it would after running for a while.
"""
from __future__ import annotations

import datetime as dt

from tests.integration.alerts_support import (access_line, alert_site, jsonlog_line, now,  # noqa: F401 (fixture)
                                              texts)

MIN = dt.timedelta(minutes=1)


def test_a_silent_service(alert_site):
    config = alert_site.configure(["service-silent"])
    t = now()
    # ElastAlert learns a component from its lines and counts its silence from the first pass that
    # saw it (see README "Alerts"), so the history starts well before the window.
    alert_site.emit("autobuild", [jsonlog_line("autobuild", "info", "workers started", at=t - 33 * MIN),
                                  jsonlog_line("autobuild", "info", "delivery", at=t - 31 * MIN)])
    # registry: gaps of 10, 9 and now 14 minutes, each just under the 15-minute window.
    alert_site.emit("registry", [jsonlog_line("registry", "info", "registry token issued", at=t - m * MIN)
                                 for m in (33, 23, 14)])
    alert_site.ship()

    passes = alert_site.passes(config, start=t - 40 * MIN)
    passes.run_once()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: a service went silent"
    # Reported when its silence reached 15 minutes (16 minutes ago), not at the end of the pass.
    assert text.startswith("*autobuild* logged fewer than 1 lines within 0:15:00 up to ")
    assert "`journalctl ASCI_COMPONENT=autobuild`" in text
    fields = {f["title"]: f["value"] for f in alert_site.receiver.messages[0]["attachments"][0]["fields"]}
    assert fields == {"Component": "autobuild", "Lines in the window": 0}

    # Still silent at the next passes: realert keeps it one message.
    passes.run_once()
    passes.run_once()
    assert len(alert_site.receiver.messages) == 1


SECOND = dt.timedelta(seconds=1)


def test_a_spike_of_4xx_answers(alert_site):
    config = alert_site.configure(["spike-4xx"])
    t = now()
    # ElastAlert compares windows only once it has seen 2 x timeframe of this rule's documents:
    # one early answer starts that clock (and is out of both windows by the time it matters).
    first = [access_line("192.0.2.20", 404, "/favicon.ico", t - 25 * MIN)]
    # Reference window: 15 answers with 4xx.
    before = [access_line("192.0.2.20", 404, "/favicon.ico", t - 14 * MIN + i * 2 * SECOND) for i in range(15)]
    # Now: a scanner walking paths, 60 answers within the last minute (>= 3 x 15 and >= 50).
    scan = [access_line("198.51.100.66", 404 if i % 3 else 401, f"/admin{i}", t - 60 * SECOND + i * SECOND)
            for i in range(60)]
    alert_site.emit("proxy", first + before + scan)
    alert_site.ship()
    passes = alert_site.passes(config, start=t - 30 * MIN)
    passes.run_once()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: spike of 4xx answers"
    assert text.startswith("60 answers with status 4xx within 0:10:00 (since ")
    assert "), against 15 in the 0:10:00 before." in text
    assert "Busiest client addresses: {'198.51.100.66': 60}; statuses: {404: 40, 401: 20}." in text
    # The scanner goes on within realert: still one message.
    alert_site.emit("proxy", [access_line("198.51.100.66", 404, f"/more{i}", now()) for i in range(80)])
    alert_site.ship()
    passes.run_once()
    assert len(alert_site.receiver.messages) == 1


def session_start(at: dt.datetime, session_id: str, user: str) -> str:
    # What asci_core logs for a new desktop session.
    return jsonlog_line("asci_core", "info", "session started", at=at, session_id=session_id, user=user,
                        environment="mx")


def test_a_spike_just_under_the_floor_is_quiet(alert_site):
    config = alert_site.configure(["spike-session-starts"])
    t = now()
    starts = [session_start(t - 25 * MIN, "s-0", "alice")]
    starts += [session_start(t - 16 * MIN + i * MIN, f"s-{i + 1}", "alice") for i in range(3)]
    # 19 starts now: more than 3 x 3, but under the floor of 20.
    starts += [session_start(t - 4 * MIN + i * 10 * SECOND, f"n-{i}", "mallory") for i in range(19)]
    alert_site.emit("asci_core", starts)
    alert_site.ship()
    passes = alert_site.passes(config, start=t - 30 * MIN)
    passes.run_once()
    assert alert_site.receiver.messages == []

    # The twentieth start crosses it: one message.
    alert_site.emit("asci_core", [session_start(now(), "n-19", "mallory")])
    alert_site.ship()
    passes.run_once()
    ((title, text),) = texts(alert_site.receiver)
    assert title == "ASCI: spike of session starts"
    assert text.startswith("20 desktop sessions started within 0:10:00 (since ")
    assert "), against 3 in the 0:10:00 before.\nBusiest users: {'mallory': 20}; environments: {'mx': 20}." in text
