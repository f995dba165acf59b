"""The pure half of the container-events feed: engine events in, `container exited` exits out.

The event dicts are recorded from engine 20.10 (an OOM-killed asci/tiny container)."""
from __future__ import annotations

import copy

from asci_core.launcher.container_events import ContainerExit, ExitTracker

ID = "80c45c4ded2bc57d89609b4eeb544a8b11266bf5f451054e2990e38cfc8ac1c3"
OOM = {"status": "oom", "id": ID, "from": "asci/tiny:latest", "Type": "container", "Action": "oom",
       "Actor": {"ID": ID, "Attributes": {"asci.component": "session", "asci.user": "alice",
                                          "image": "asci/tiny:latest", "name": "asci-session-abc"}},
       "scope": "local", "time": 1796194413, "timeNano": 1796194413640247500}
DIE = {"status": "die", "id": ID, "from": "asci/tiny:latest", "Type": "container", "Action": "die",
       "Actor": {"ID": ID, "Attributes": {"asci.component": "session", "asci.user": "alice", "exitCode": "137",
                                          "image": "asci/tiny:latest", "name": "asci-session-abc"}},
       "scope": "local", "time": 1796194413, "timeNano": 1796194413669244524}


def die(code: str, at_nano: int, name: str = "asci-session-abc", container_id: str = ID, **labels: str):
    event = copy.deepcopy(DIE)
    event["Actor"]["ID"] = event["id"] = container_id
    event["Actor"]["Attributes"].update(exitCode=code, name=name, **labels)
    event["timeNano"], event["time"] = at_nano, at_nano // 10**9
    return event


def test_die_after_oom_is_one_exit_killed_for_memory():
    tracker = ExitTracker()
    assert tracker.feed(OOM) is None
    assert tracker.feed(DIE) == ContainerExit("asci-session-abc", 137, True, 0, "session", "alice")


def test_plain_die_is_not_an_oom_kill_and_counts_restarts_by_name():
    tracker = ExitTracker(window=600)
    base = DIE["timeNano"]
    exits = [tracker.feed(die("3", base + i * 10**9, container_id=f"{i}" * 64)) for i in range(3)]
    assert [(e.exit_code, e.oom_killed, e.restarts) for e in exits] == [(3, False, 0), (3, False, 1), (3, False, 2)]
    assert exits[0].fields() == {"container": "asci-session-abc", "exit_code": 3, "oom_killed": False,
                                 "restarts": 0, "container_component": "session", "user": "alice"}
    # Outside the window the count starts again.
    assert tracker.feed(die("3", base + 700 * 10**9)).restarts == 0


def test_an_oom_of_another_container_does_not_mark_this_one():
    tracker = ExitTracker()
    tracker.feed(OOM)
    assert tracker.feed(die("1", DIE["timeNano"], name="asci-web", container_id="f" * 64)).oom_killed is False
    assert tracker.feed(DIE).oom_killed is True


def test_unlabelled_and_other_events_are_ignored():
    tracker = ExitTracker()
    unlabelled = copy.deepcopy(DIE)
    del unlabelled["Actor"]["Attributes"]["asci.component"]
    start = copy.deepcopy(DIE)
    start["Action"] = start["status"] = "start"
    network = {"Type": "network", "Action": "connect", "Actor": {"ID": "n", "Attributes": {"asci.component": "x"}}}
    assert [tracker.feed(e) for e in (unlabelled, start, network)] == [None, None, None]
