"""The front as `asci services status` sees it, repaired by `deploy`; old front images removed; a crash of
the serving version answered at once by the front and brought back by `asci serve` (a real kill)."""
from __future__ import annotations

import io
import json
import os
import signal
import time
import uuid

import pytest
import requests
import yaml

from tests.conftest import LABELS, free_port
from tests.integration.autobuild_support import Serve
from tests.integration.services_support import remove_service
from tests.integration.test_services_front import configure, front_backend, push, services
from tests.support.waiting import wait_until

TOKEN = uuid.uuid4().hex[:8]
IMAGE = f"asci-test/svc-front-state-{TOKEN}"
ASK = ["python3", "/usr/local/bin/asci-front"]


@pytest.fixture(scope="module")
def image(stack, docker_client):
    push(stack, docker_client, "v1.0.0", IMAGE)
    return IMAGE


@pytest.fixture
def fronted(stack, docker_client, image, tmp_path):
    name = f"state_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, repository=image)
    services(path, "deploy")
    (version,) = docker_client.containers.list(filters={"label": f"asci.service={name}"})
    yield name, path, port, version
    remove_service(docker_client, name)


def status_of(path, name: str) -> dict:
    (row,) = [r for r in json.loads(services(path, "status", "--json").stdout) if r["service"] == name]
    return row


def timed_get(url: str) -> tuple[float, str]:
    """How long one request took, and its answer (or the error's name): a front that hangs shows here."""
    started = time.monotonic()
    try:
        answer = requests.get(url, timeout=8, headers={"Connection": "close"}).text.strip()
    except requests.RequestException as exc:
        answer = type(exc).__name__
    return time.monotonic() - started, answer


def test_status_shows_the_front_and_flags_a_misdirected_one_which_deploy_repairs(fronted, docker_client):
    name, path, port, version = fronted
    row = status_of(path, name)
    assert row["health"] == "healthy" and row["problem"] is None
    assert row["front"]["container"] == f"asci-front-{name}" and row["front"]["state"] == "running"
    assert row["front"]["backend"] == version.name and row["front"]["since"] and row["front"]["problem"] is None
    text = services(path, "status").stdout
    assert f"front of {name}: asci-front-{name} running since" in text and "!" not in text

    front = docker_client.containers.get(f"asci-front-{name}")
    assert front.exec_run([*ASK, "switch", f"asci-svc-{name}-gone"]).exit_code == 0
    row = status_of(path, name)
    assert row["front"]["backend"] == f"asci-svc-{name}-gone"
    assert row["problem"] == f"the front forwards to asci-svc-{name}-gone, not to {version.name}"
    assert f"! {name}: the front forwards to" in services(path, "status").stdout
    # A backend that is not there: the connection is closed at once, not held for front.hold (10 s).
    seconds, answer = timed_get(f"http://127.0.0.1:{port}/version")
    assert answer != "v1.0.0" and seconds < 2, (seconds, answer)

    out = services(path, "deploy").stdout.strip()
    assert out == f"{name}: v1.0.0 running (front repaired: the front forwarded to asci-svc-{name}-gone)"
    assert status_of(path, name)["problem"] is None
    assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip() == "v1.0.0"


def test_a_stopped_front_is_flagged_and_deploy_starts_it_forwarding_again(fronted, docker_client):
    name, path, port, version = fronted
    docker_client.containers.get(f"asci-front-{name}").stop(timeout=1)
    row = status_of(path, name)
    assert row["front"]["state"] == "exited" and row["front"]["backend"] is None
    assert row["problem"] == "the front is exited: its ports answer nothing"
    out = services(path, "deploy").stdout.strip()
    assert out == f"{name}: v1.0.0 running (front repaired: the front is exited: its ports answer nothing)"
    assert status_of(path, name)["front"]["problem"] is None
    assert front_backend(docker_client, name) == version.name
    assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip() == "v1.0.0"


def _fake_front_image(stack, docker_client, tag: str, label: bool = True) -> str:
    dockerfile = f"FROM {stack.config.stack.base_image.tiny_name}\nRUN echo {tag} > /front-test\n"
    labels = {**LABELS, **({"asci.service-front": "image"} if label else {})}
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, labels=labels)
    return image.id


def test_a_replaced_front_removes_the_front_images_nothing_uses_and_nothing_else(fronted, stack, docker_client):
    name, path, port, version = fronted
    unused = f"asci/service-front:old{TOKEN}"
    used = f"asci/service-front:kept{TOKEN}"
    foreign = f"asci-test/not-a-front:{TOKEN}"  # carries the label, but not the front's name
    unlabelled = f"asci/service-front:nolabel{TOKEN}"  # the front's name, but not its label
    for tag in (unused, used):
        _fake_front_image(stack, docker_client, tag)
    _fake_front_image(stack, docker_client, foreign)
    _fake_front_image(stack, docker_client, unlabelled, label=False)
    holder = docker_client.containers.create(used, command=["true"], labels=LABELS)  # stopped: still its user
    current_image = docker_client.containers.get(f"asci-front-{name}").image.id
    try:
        docker_client.containers.get(f"asci-front-{name}").remove(force=True)
        assert status_of(path, name)["front"]["state"] == "missing"
        assert "front repaired: the front is missing" in services(path, "deploy").stdout

        tags = {t for i in docker_client.images.list() for t in i.tags}
        assert unused not in tags
        assert {used, foreign, unlabelled} <= tags
        assert docker_client.containers.get(f"asci-front-{name}").image.id == current_image
        assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip() == "v1.0.0"
    finally:
        holder.remove(force=True)
        for tag in (unused, used, foreign, unlabelled):
            try:
                docker_client.images.remove(tag)
            except Exception:  # already removed by the test's subject
                pass


def _serve_log_lines(log_path, message: str) -> list[dict]:
    found = []
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == message:
            found.append(entry)
    return found


def test_a_crashed_version_is_refused_at_once_by_the_front_and_brought_back_by_serve(stack, docker_client, image,
                                                                                     tmp_path):
    name = f"crash_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, repository=image)
    data = yaml.safe_load(path.read_text())
    serve_port = data["server"]["port"]
    url = f"http://127.0.0.1:{port}/version"
    log_path = tmp_path / "serve.log"
    server = None
    try:
        services(path, "deploy")
        (version,) = docker_client.containers.list(filters={"label": f"asci.service={name}"})
        server = Serve(path, serve_port, log_path).start()
        wait_until(lambda: _serve_log_lines(log_path, "services: following the engine's container exits"), 60,
                   "serve following the container exits")

        # A real crash: the service's own process killed from the host (init then exits with 137).
        (pid,) = [int(p[1]) for p in version.top()["Processes"] if p[-1].startswith("httpd")]
        os.kill(pid, signal.SIGKILL)
        timings = []
        deadline = time.monotonic() + 30
        while True:
            seconds, answer = timed_get(url)
            timings.append((round(seconds, 2), answer))
            if answer == "v1.0.0" and len(timings) > 1:
                break
            assert time.monotonic() < deadline, timings[-5:]
        assert max(s for s, _ in timings) < 2, timings  # refused or answered, never held
        restored = wait_until(lambda: _serve_log_lines(log_path, "serving version exited; restarted and healthy"),
                              30, "serve's line about the crash")
        assert len(restored) == 1
        assert (restored[0]["container"], restored[0]["exit_code"], restored[0]["restarted_by"]) == (
            version.name, 137, "engine")

        # Stopped by hand: the engine's policy leaves it stopped, serve restores the recorded version.
        version.stop(timeout=1)
        restored = wait_until(lambda: len(_serve_log_lines(log_path, "serving version exited; restarted and "
                                                                     "healthy")) == 2 and _serve_log_lines(
            log_path, "serving version exited; restarted and healthy"), 30, "serve restoring the stopped version")
        assert restored[1]["restarted_by"] == "asci" and restored[1]["container"] == version.name
        assert requests.get(url, timeout=5).text.strip() == "v1.0.0"
        assert front_backend(docker_client, name) == version.name
    finally:
        if server is not None:
            server.stop()
        remove_service(docker_client, name)


def _inside(docker_client, container, *command: str) -> list[str]:
    """COMMAND run as if inside CONTAINER where `asci` finds out where it runs: in a mount namespace of its
    own with the container's /etc/hostname bind-mounted from the engine's directory, as the engine does."""
    source = f"{docker_client.info()['DockerRootDir']}/containers/{container.id}/hostname"
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$1" /etc/hostname && shift && exec "$@"', "sh", source, *command]


def test_deploy_refuses_in_one_line_to_replace_the_container_it_runs_in(stack, docker_client, image, tmp_path):
    import subprocess

    from tests.integration.autobuild_support import ASCI

    push(stack, docker_client, "v1.0.2", image)
    name = f"selfie_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, front=False, repository=image, follow="pinned")
    try:
        services(path, "deploy")
        (version,) = docker_client.containers.list(filters={"label": f"asci.service={name}"})
        same = subprocess.run(_inside(docker_client, version, ASCI, "-c", str(path), "services", "deploy", name),
                              capture_output=True, text=True, timeout=120)
        assert (same.returncode, same.stdout.strip()) == (0, f"{name}: v1.0.0 running (unchanged)"), same.stderr

        data = yaml.safe_load(path.read_text())
        data["services"]["definitions"][0]["tag"] = "v1.0.2"
        path.write_text(yaml.safe_dump(data))
        out = subprocess.run(_inside(docker_client, version, ASCI, "-c", str(path), "services", "deploy", name),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert f"refusing to replace {name} from inside its own container {version.name}" in out.stderr
        version.reload()
        assert version.status == "running"
        assert [r["to_tag"] for r in json.loads(services(path, "history", name, "--json").stdout)] == ["v1.0.0"]

        assert services(path, "deploy").stdout.strip() == f"{name}: v1.0.2 deployed"  # from the host: done
        assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip() == "v1.0.2"
    finally:
        remove_service(docker_client, name)
