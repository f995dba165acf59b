"""End to end: the follower's own lines, through journald and the shipper, fire the container alerts."""
from __future__ import annotations

import io
import logging

from asci_core.jsonlog import JsonFormatter
from asci_core.launcher.container_events import ContainerEventFollower, ContainerExit, log_exit
from tests.conftest import LABELS
from tests.integration.alerts_support import alert_site, texts  # noqa: F401 (fixture)
from tests.integration.test_container_events import Sink

EATER = ["sh", "-c", 'sh -c "x=a; while true; do x=\\$x\\$x; done"; sleep 1; exit 137']


def test_follower_lines_fire_restart_loop_and_oom_alerts(alert_site, docker_client, config, unique):
    sink, lines = Sink(), io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("asci.containers")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    written: list[str] = []

    def emit(exit: ContainerExit) -> None:
        start = len(lines.getvalue())
        log_exit(exit)
        written.append(lines.getvalue()[start:].strip())   # exactly what the follower wrote
        sink(exit)

    follower = ContainerEventFollower(config.stack.docker.socket, emit=emit)
    follower.start()
    try:
        assert follower.wait_connected(30)
        looping = unique("loop")
        docker_client.containers.run("asci/tiny:latest", ["sh", "-c", "exit 3"], name=looping, detach=True,
                                     labels={**LABELS, "asci.component": "session", "asci.user": "alice"},
                                     restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
        killed = None
        names = []
        for attempt in range(6):  # the engine misses an OOM kill now and then (container_events' note)
            name = unique(f"oom{attempt}")
            names.append(name)
            container = docker_client.containers.run(
                "asci/tiny:latest", EATER, name=name, detach=True, mem_limit="8m", memswap_limit="8m",
                labels={**LABELS, "asci.component": "session", "asci.user": "bob"})
            container.wait(timeout=60)
            container.reload()
            if container.attrs["State"]["OOMKilled"]:
                killed = name
                break
        assert killed, "the engine never reported an OOM kill"
        sink.wait_for({looping, *names}, {looping: 3, **{n: 1 for n in names}})
    finally:
        follower.stop()
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    ours = [w for w in written if looping in w or any(n in w for n in names)]
    config = alert_site.configure(["container-restart-loop", "container-oom-killed"])
    alert_site.emit("asci_core", ours, level="warning")
    alert_site.ship()
    alert_site.passes(config).run_once()
    posted = texts(alert_site.receiver)
    loops = [text for title, text in posted if title == "ASCI: a container is restarting in a loop"]
    ooms = [text for title, text in posted if title == "ASCI: a container was killed for memory"]
    assert len(loops) == 1 and loops[0].startswith(
        f"Container *{looping}* (asci_core) exited at least 3 times within 0:10:00, last at ")
    assert f"with exit code 3.\nLogs: `asci.fields.container:\"{looping}\"` in index " in loops[0]
    assert len(ooms) == 1 and ooms[0].startswith(
        f"Container *{killed}* (asci_core, user bob) was killed by the kernel for memory at ")
    assert "(limit 8 MiB)" in ooms[0]
