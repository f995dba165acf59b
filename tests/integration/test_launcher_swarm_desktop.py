"""The Swarm backend with the real desktop image, on the real 3-node Swarm: the node Swarm picks
pulls desktop-base from the registry with the launcher's pull-only account (sent with the
service), the session becomes ready once its VNC server answers, and `connect` gives a password
a real VNC login accepts — seen from the node, where the proxy would reach it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from asci_core.launcher.directory import LocalUsersFile
from asci_core.launcher.errors import StartFailed
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, LauncherSettings, NodeSettings, SwarmSettings
from asci_core.launcher.store import READY, STOPPED, SessionStore
from asci_core.launcher.swarm import SwarmLauncher
from autobuild.images import content_tag
from tests.conftest import LABELS
from tests.integration import images_support, pull_registry
from tests.integration.netns_relay import LoopbackRelay, connect_in
from tests.integration.rfb_client import AuthFailed, RfbClient
from tests.integration.launcher_nodes import NodeCluster
from tests.integration.test_launcher_swarm import NODE_LABELS, containers_on, services
from tests.integration.launcher_support import make_data, wait_for

pytestmark = pytest.mark.integration
USERS = "users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i03]}\ngroups: {i03: 7003}\n"


@pytest.fixture(scope="module")
def swarm():
    """The Swarm of test_launcher_swarm.py, but whose tasks pull their image as in production."""
    with NodeCluster(3, "swarm", swarm_pulls=True) as cluster:
        cluster.form_swarm(NODE_LABELS)
        yield cluster


@pytest.fixture(scope="module")
def registry(stack, tmp_path_factory, swarm):
    """A registry with a pull-only account, reachable from every Swarm node at its host address."""
    started = pull_registry.start(stack, tmp_path_factory.mktemp("swarm-registry"))
    relay = LoopbackRelay([Path("/run/netns") / n.netns for n in swarm], started.ports())
    yield started
    relay.close()
    started.sandbox.stop()


@pytest.fixture(scope="module")
def desktop(stack, docker_client, registry, unique_module) -> str:
    """This tree's desktop-base (by its content tag), pushed to the registry under a name of its own."""
    outcome = images_support.image(stack, docker_client, "desktop-base")
    source = images_support.family(stack).ref("desktop-base", content_tag(outcome.inputs))
    return registry.push(docker_client, source, f"asci-test/{unique_module}")


@pytest.fixture(scope="module")
def unique_module(request) -> str:
    import uuid
    return f"desktop-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


def build(swarm, tmp_path: Path, scope, image: str, access) -> SwarmLauncher:
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    env = replace(DEFAULT_ENVIRONMENT, image=image, cpus=1.0, memory="1g", node_labels={"beamline": "i03"})
    nodes = [NodeSettings(name=n.name, url=n.url, cpus=2.0, memory="4g", gpus=0, timeout=20.0) for n in swarm]
    # The first task on a node pulls the whole desktop on a busy machine.
    settings = LauncherSettings(backend="swarm", swarm=SwarmSettings(manager=swarm.nodes[0].url, timeout=20.0,
                                                                     start_timeout=300.0),
                                environments=[env], nodes=nodes, stop_timeout=2)
    (tmp_path / "users.yaml").write_text(USERS)
    return SwarmLauncher(settings, SessionStore(tmp_path / "sessions.sqlite"), LocalUsersFile(tmp_path / "users.yaml"),
                         scope, registry=access)


def has_image(node, ref: str) -> bool:
    client = node.client()
    try:
        return bool(client.images.list(name=ref))
    finally:
        client.close()


def login_from(node, address: str, password: str) -> RfbClient:
    viewer = RfbClient(address, sock=connect_in(Path("/run/netns") / node.netns, address, 5901))
    try:
        viewer.login(password)
    except BaseException:
        viewer.close()
        raise
    return viewer


def test_a_desktop_session_on_swarm_pulls_with_the_pull_account_and_reaches_a_vnc_login(
        swarm, registry, desktop, scope, tmp_path, request):
    node = swarm.nodes[0]  # the only node labelled beamline=i03
    assert not has_image(node, desktop)
    launcher = build(swarm, tmp_path, scope, desktop, registry.puller)
    try:
        record = launcher.create("alice", "desktop-base")
        assert record.state == READY and record.node == node.name
        assert has_image(node, desktop)  # pulled by the node Swarm chose
        repository = desktop.split("/", 1)[1].rsplit(":", 1)[0]
        assert any(pull_registry.PULLER in line and repository in line
                   for line in registry.sandbox.log_path.read_text().splitlines())

        (service,) = services(swarm, scope)
        spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
        variables = dict(v.split("=", 1) for v in spec["Env"])
        # No first password handed in: the image made one up, nobody knows it.
        assert "ASCI_VNC_PASSWORD_FILE" not in variables and variables["ASCI_GROUPS"] == "i03:7003"
        assert "User" not in spec and sorted(spec["CapabilityAdd"]) == ["CHOWN", "DAC_OVERRIDE", "FOWNER",
                                                                          "SETGID", "SETUID"]
        client = node.client()
        request.addfinalizer(client.close)
        (container_id,) = containers_on(node, scope)
        rows = client.api.top(container_id, ps_args="-o pid,uid,args")["Processes"]
        assert {uid for _, uid, args in rows if "asci-vnc-health" not in args} == {"5001"}, rows

        first = launcher.connect(record.id, as_user="alice")
        password = first.password.reveal()
        assert password not in str(client.api.inspect_container(container_id)) and password not in str(service)
        with login_from(node, first.address, password) as viewer:
            assert viewer.name == "Debian desktop"
        second = launcher.connect(record.id, as_user="alice")
        with pytest.raises(AuthFailed):
            login_from(node, second.address, password).close()
        login_from(node, second.address, second.password.reveal()).close()

        assert launcher.stop(record.id).state == STOPPED
        assert services(swarm, scope) == []
        wait_for(lambda: containers_on(node, scope) == [], timeout=30, what="the task's container to go")
    finally:
        launcher.close()


def test_a_refused_pull_account_is_one_line_and_leaves_no_service(swarm, registry, desktop, scope,
                                                                  tmp_path):
    launcher = build(swarm, tmp_path, scope, desktop, registry.with_password("not-the-password"))
    try:
        with pytest.raises(StartFailed) as info:
            launcher.create("alice", "desktop-base")
        message = str(info.value)
        assert "\n" not in message and "not-the-password" not in message
        assert f"refused the pull account '{pull_registry.PULLER}'" in message, message
        assert services(swarm, scope) == [] and all(containers_on(n, scope) == [] for n in swarm)
        (record,) = launcher.list(include_stopped=True)
        assert record.state == STOPPED
    finally:
        launcher.close()
