"""Behind its front, a start-first roll refuses no request: a real load loop of HTTP requests runs across it.

The same loop against the same roll with the front switched off (the version publishes the port itself)
counts the failed requests of the swap, so the zero above is a measurement that can fail. The front
also outlives `asci serve`: it is a container of its own, and a reconcile finds it already forwarding.
"""
from __future__ import annotations

import io
import json
import subprocess
import time
import uuid

import pytest
import requests
import yaml

from tests.conftest import LABELS, free_port
from tests.integration.autobuild_support import ASCI, autobuild_config
from tests.integration.services_support import EngineRelay, Load, remove_service
from tests.support.waiting import wait_until

TOKEN = uuid.uuid4().hex[:8]
IMAGE = f"asci-test/svc-front-{TOKEN}"


def push(stack, docker_client, tag: str, image: str = IMAGE, healthy: bool = True) -> None:
    ref = f"{stack.registry.address}/{image}:{tag}"
    health = " && touch /www/healthz" if healthy else ""
    dockerfile = (f"FROM {stack.config.stack.base_image.tiny_name}\n"
                  f"RUN mkdir /www && echo {tag} > /www/version{health}\n"
                  "USER nobody\n"  # a named user: secrets copied in are given to it
                  'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True, labels=LABELS)
    lines = docker_client.api.push(ref.rsplit(":", 1)[0], tag, stream=True, decode=True,
                                   auth_config=stack.registry.auth_config())
    assert not [line for line in lines if "error" in line]


@pytest.fixture(scope="module")
def tags(stack, docker_client):
    for tag in ("v1.0.0", "v1.0.2"):
        push(stack, docker_client, tag)


def configure(stack, root, name: str, port: int, front: bool = True, replace: str = "start-first", **extra):
    path = autobuild_config(root / "asci.yaml", config=stack.config, workdir=root / "work", git_root=root / "git",
                            port=free_port(), repositories=[])
    data = yaml.safe_load(path.read_text())
    data["services"] = {"workdir": str(root / "services"), "check_interval": 3600, "definitions": [{
        "name": name, "repository": IMAGE, "tag": "v1.0.0", "follow": "patch", "replace": replace,
        "ports": [{"container": 8080, "host": port, "host_ip": "127.0.0.1"}], "front": {"enabled": front},
        "health": {"http_path": "/healthz", "interval": 0.1, "timeout": 2, "wait": 15}, **extra}]}
    path.write_text(yaml.safe_dump(data))
    return path


def services(path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([ASCI, "-c", str(path), "services", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def roll_under_load(path, url: str, to_tag: str) -> Load:
    """Deploy v1.0.0, then roll to TO_TAG (the registry check takes the newest patch) while the load runs."""
    load = Load(url)
    load.start()
    try:
        load.wait_for("v1.0.0", 20)
        services(path, "check")  # returns once the roll is over
        load.wait_for(to_tag, 20)
    finally:
        load.stop()
    return load


def front_backend(docker_client, name: str) -> str | None:
    show = docker_client.containers.get(f"asci-front-{name}").exec_run(
        ["python3", "/usr/local/bin/asci-front", "show"]).output.decode()
    return json.loads(show[3:])["backend"]


@pytest.fixture(params=["start-first"])
def fronted(request, stack, docker_client, tags, tmp_path):
    name = f"front_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, replace=request.param)
    services(path, "deploy")
    yield name, path, f"http://127.0.0.1:{port}/version"
    remove_service(docker_client, name)


def test_a_start_first_roll_behind_the_front_fails_no_request(fronted, docker_client):
    name, path, url = fronted
    load = roll_under_load(path, url, "v1.0.2")
    assert load.failures == [], f"{len(load.failures)} of {len(load.failures) + len(load.answers)} failed"
    assert set(load.answers) == {"v1.0.0", "v1.0.2"} and len(load.answers) >= 40

    (version,) = docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"})
    assert version.labels["asci.service-tag"] == "v1.0.2" and version.status == "running"
    assert version.attrs["HostConfig"]["PortBindings"] in ({}, None)  # the front owns the host port
    assert list(version.attrs["NetworkSettings"]["Networks"]) == [f"asci-svc-{name}"]
    front = docker_client.containers.get(f"asci-front-{name}")
    assert front.status == "running" and front.labels["asci.component"] == name
    assert front_backend(docker_client, name) == version.name


@pytest.mark.parametrize("fronted", ["stop-first"], indirect=True)
def test_a_stop_first_roll_never_runs_two_versions_and_the_front_holds_requests_meanwhile(fronted, docker_client):
    name, path, url = fronted
    since = int(time.time()) - 1
    load = roll_under_load(path, url, "v1.0.2")
    events = [(e["Action"], e["Actor"]["Attributes"]["asci.service-tag"]) for e in docker_client.events(
        since=since, until=int(time.time()) + 1, decode=True, filters={"label": f"asci.service={name}",
                                                                        "event": ["start", "die"]})]
    assert events.index(("die", "v1.0.0")) < events.index(("start", "v1.0.2")), events
    assert load.failures == [], f"{len(load.failures)} of {len(load.failures) + len(load.answers)} failed"
    assert set(load.answers) == {"v1.0.0", "v1.0.2"}


def test_a_restart_after_the_switch_but_before_the_record_goes_back_to_the_recorded_version(fronted, stack,
                                                                                           docker_client):
    """The state SIGKILL leaves between `switch` and the record of the roll: undone by the next reconcile."""
    from asci_core.config import load_config
    from asci_core.services import containers as ctr
    from asci_core.services.deployer import Services

    name, path, url = fronted
    (old,) = docker_client.containers.list(filters={"label": f"asci.service={name}"})
    services_ = Services(load_config(path))
    try:
        svc = services_.service(name)
        services_.store.begin_roll(name, "v1.0.0", "v1.0.2", "autobuild")
        ref = services_.image(svc, "v1.0.2")
        docker_client.images.pull(ref, auth_config=stack.registry.auth_config())
        new = ctr.create(docker_client, svc, ref, "v1.0.2", None, services_.workdir, candidate=False,
                         network=f"asci-svc-{name}")
        new.start()
    finally:
        services_.close()
    front = docker_client.containers.get(f"asci-front-{name}")
    assert front.exec_run(["python3", "/usr/local/bin/asci-front", "switch", new.name]).exit_code == 0
    wait_until(lambda: requests.get(url, timeout=5).text.strip() == "v1.0.2", 20, "the switched front")

    assert services(path, "deploy").stdout.strip() == f"{name}: v1.0.0 running (unchanged)"
    (left,) = docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"})
    assert left.name == old.name and left.status == "running"
    assert front_backend(docker_client, name) == old.name
    assert requests.get(url, timeout=5).text.strip() == "v1.0.0"
    rolls = json.loads(services(path, "history", name, "--json").stdout)
    assert rolls[0]["to_tag"] == "v1.0.2" and rolls[0]["result"] == "interrupted"


def test_the_front_outlives_its_versions_and_a_reconcile_leaves_it_forwarding(fronted, docker_client):
    name, path, url = fronted
    front = docker_client.containers.get(f"asci-front-{name}")
    started = front.attrs["State"]["StartedAt"]
    assert services(path, "deploy").stdout.strip() == f"{name}: v1.0.0 running (unchanged)"
    services(path, "check")
    assert requests.get(url, timeout=5).text.strip() == "v1.0.2"
    front.reload()
    assert front.attrs["State"]["StartedAt"] == started and front.attrs["RestartCount"] == 0


def test_without_the_front_the_same_load_loop_counts_the_swap_gap(stack, docker_client, tags, tmp_path):
    name = f"direct_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, front=False)
    try:
        services(path, "deploy")
        load = roll_under_load(path, f"http://127.0.0.1:{port}/version", "v1.0.2")
        assert load.failures, "the direct swap stops the old version before the new one binds the port"
        assert not docker_client.containers.list(all=True, filters={"label": f"asci.service-front={name}"})
    finally:
        remove_service(docker_client, name)


@pytest.fixture
def far_node(stack):
    """The local engine reached as tcp://127.0.0.1:PORT: to the services, a node other than this host."""
    relay = EngineRelay(str(stack.config.stack.docker.socket))
    yield relay
    relay.close()


def with_nodes(path, relay: EngineRelay, stack) -> None:
    data = yaml.safe_load(path.read_text())
    data.setdefault("launcher", {})["nodes"] = [
        {"name": "local", "url": f"unix://{stack.config.stack.docker.socket}"}, {"name": "far", "url": relay.url}]
    path.write_text(yaml.safe_dump(data))


def test_on_another_node_the_front_makes_the_http_check_and_secrets_are_copied_in(stack, docker_client, tags,
                                                                                 tmp_path, far_node):
    name = f"far_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, node="far", secrets=[{"name": "token", "value": "far-secret"}])
    with_nodes(path, far_node, stack)
    try:
        services(path, "deploy")
        load = roll_under_load(path, f"http://127.0.0.1:{port}/version", "v1.0.2")
        assert load.failures == []
        (version,) = docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"})
        assert version.exec_run(["cat", "/run/secrets/token"]).output == b"far-secret"  # as its user, nobody
        assert version.exec_run(["stat", "-c", "%U %a", "/run/secrets/token"]).output.split() == [b"nobody", b"400"]
        assert "far-secret" not in json.dumps(version.attrs) and not version.attrs["HostConfig"]["Binds"]
        assert not (tmp_path / "services" / name / "secrets").exists()  # no file on this host
        status = json.loads(services(path, "status", "--json").stdout)
        assert (status[0]["node"], status[0]["tag"], status[0]["health"]) == ("far", "v1.0.2", "healthy")
    finally:
        remove_service(docker_client, name)


def test_an_http_check_on_another_node_without_a_front_is_refused_in_one_line(stack, tmp_path, far_node):
    path = configure(stack, tmp_path, "nofront", free_port(), front=False, node="far")
    with_nodes(path, far_node, stack)
    out = subprocess.run([ASCI, "-c", str(path), "services", "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "an HTTP health check on another node is made through the service's front" in out.stderr
    assert "nofront (far)" in out.stderr


def test_a_service_never_deployed_is_deployed_by_the_first_build_its_policy_takes(stack, docker_client, tags,
                                                                                  tmp_path):
    """`deploy_when_built`: autobuild's event (Services.built, as `asci serve` calls it) and the registry check."""
    from asci_core.config import load_config
    from asci_core.services.deployer import Services

    name = f"first_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, tag="v1.0.1", deploy_when_built=True)
    services_ = Services(load_config(path))
    try:
        services_.built(f"{stack.registry.address}/{IMAGE}", "v1.0.0")  # older than the configured tag
        services_.built(f"{stack.registry.address}/other/{IMAGE}", "v1.0.2")  # another repository
        assert services_.store.current(name) is None
        services_.built(f"{stack.registry.address}/{IMAGE}", "v1.0.2")
        assert services_.store.current(name).tag == "v1.0.2"
        assert services_.history(name)[0].trigger == "autobuild"
        assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip() == "v1.0.2"
    finally:
        services_.close()
        remove_service(docker_client, name)


@pytest.mark.parametrize("deploy_when_built", [True, False])
def test_the_registry_check_deploys_a_service_never_deployed_only_when_asked(stack, docker_client, tags, tmp_path,
                                                                             deploy_when_built):
    name = f"first_{uuid.uuid4().hex[:8]}"
    path = configure(stack, tmp_path, name, free_port(), follow="pinned", deploy_when_built=deploy_when_built)
    try:
        services(path, "check")
        rolls = json.loads(services(path, "history", name, "--json").stdout)
        if deploy_when_built:
            assert [(r["to_tag"], r["result"], r["trigger"]) for r in rolls] == [("v1.0.0", "succeeded", "registry")]
        else:
            assert rolls == []
    finally:
        remove_service(docker_client, name)


def test_a_failed_stop_first_roll_restarts_the_old_version_and_switches_the_front_back(stack, docker_client,
                                                                                       tmp_path):
    image = f"asci-test/svc-front-bad-{TOKEN}"
    push(stack, docker_client, "v1.0.0", image)
    push(stack, docker_client, "v1.0.1", image, healthy=False)
    name = f"back_{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = configure(stack, tmp_path, name, port, replace="stop-first", repository=image,
                     health={"http_path": "/healthz", "interval": 0.1, "timeout": 2, "wait": 2})
    try:
        services(path, "deploy")
        (old,) = docker_client.containers.list(filters={"label": f"asci.service={name}"})
        services(path, "check")
        rolls = json.loads(services(path, "history", name, "--json").stdout)
        assert (rolls[0]["to_tag"], rolls[0]["result"]) == ("v1.0.1", "failed")
        assert "/healthz answered 404" in rolls[0]["reason"]
        (left,) = docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"})
        assert left.name == old.name and left.status == "running"
        assert front_backend(docker_client, name) == old.name
        assert requests.get(f"http://127.0.0.1:{port}/version", timeout=5).text.strip() == "v1.0.0"
    finally:
        remove_service(docker_client, name)


def test_a_version_that_published_its_ports_itself_moves_behind_a_front_at_its_next_deploy(stack, docker_client,
                                                                                          tags, tmp_path):
    name = f"moved_{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/version"
    try:
        services(configure(stack, tmp_path, name, port, front=False), "deploy")
        (direct,) = docker_client.containers.list(filters={"label": f"asci.service={name}"})
        assert direct.attrs["HostConfig"]["PortBindings"]
        out = services(configure(stack, tmp_path, name, port, front=True), "deploy")
        assert out.stdout.strip() == f"{name}: v1.0.0 deployed"  # the same tag, another shape: recreated
        (version,) = docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"})
        assert version.name != direct.name and list(version.attrs["NetworkSettings"]["Networks"]) == [
            f"asci-svc-{name}"]
        assert front_backend(docker_client, name) == version.name
        assert requests.get(url, timeout=5).text.strip() == "v1.0.0"
    finally:
        remove_service(docker_client, name)
