"""The launcher against the real desktop image: the entry point makes the account and drops root,
`connect` sets a one-time password that a real VNC login needs, and the old one stops working."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, IMAGE_ACCOUNT_CAPABILITIES, MountSettings, with_registry
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.launcher_api_support import ServedApi, write_config
from tests.integration.launcher_support import build_launcher, make_data
from tests.integration.rfb_client import AuthFailed, RfbClient

pytestmark = pytest.mark.integration


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def desktop(stack, docker_client) -> str:
    """The desktop image as `asci images build desktop-base` tags it (built once, cached after)."""
    images_support.image(stack, docker_client, "desktop-base")
    return images_support.family(stack).ref("desktop-base", images_support.TAG)


def desktop_environment(stack, data_root: Path):
    # The embedded default, with one data mount inside the home: the entry point must hand the
    # engine-created home over (chown, then chmod: FOWNER) with only the capabilities it is given.
    env = with_registry(DEFAULT_ENVIRONMENT, stack.registry.address)
    from dataclasses import replace
    return replace(env, cpus=1.0, mounts=[MountSettings(f"{data_root}/data/{{user}}", "/home/{user}/data", True)])


def login(address: str, password: str) -> RfbClient:
    """A VNC login once Xvnc listens; AuthFailed when the password is refused."""
    deadline = time.monotonic() + 30
    while True:
        client = None
        try:
            client = RfbClient(address, timeout=10)
            client.login(password)
            return client
        except AuthFailed:
            client.close()
            raise
        except OSError:
            if client is not None:
                client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def refused(address: str, password: str) -> bool:
    try:
        login(address, password).close()
    except AuthFailed:
        return True
    return False


def drawn(address: str, password: str) -> int:
    """Colours on screen once the desktop has drawn something other than one flat colour."""
    with login(address, password) as viewer:
        return images_support.wait_for("a drawn desktop", lambda: (lambda n: n if n > 1 else None)(
            viewer.full_frame().colours()), timeout=60)


def processes(docker_client, container_id: str) -> list[tuple[str, str]]:
    """(uid, command) of every process in the session, apart from the engine's health probe
    (the image's probe starts as root and drops to nobody before it opens anything)."""
    rows = docker_client.api.top(container_id, ps_args="-o pid,uid,args")["Processes"]
    return [(uid, args) for _, uid, args in rows if "asci-vnc-health" not in args]


def test_a_real_desktop_session_through_the_launcher(stack, docker_client, scope, tmp_path, desktop):
    data_root = tmp_path / "fs"
    make_data(data_root, ("alice", 5001))
    env = desktop_environment(stack, data_root)
    assert env.image == desktop
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env])
    try:
        record = launcher.create("alice", "desktop-base")
        container = docker_client.containers.get(record.container_id)
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == "" and host["Init"] in (False, None)
        assert sorted(host["CapAdd"]) == sorted(IMAGE_ACCOUNT_CAPABILITIES) and host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        variables = dict(v.split("=", 1) for v in container.attrs["Config"]["Env"])
        assert (variables["ASCI_USER"], variables["ASCI_UID"], variables["ASCI_GID"], variables["ASCI_HOME"],
                variables["ASCI_ENVIRONMENT_TITLE"]) == ("alice", "5001", "5001", "/home/alice", "Debian desktop")
        # The first password went in on the entry point's stdin: nowhere in the container's record.
        assert variables["ASCI_VNC_PASSWORD_FILE"] == "/dev/stdin"

        first = launcher.connect(record.id, as_user="alice")
        assert first.password.reveal() not in str(docker_client.api.inspect_container(record.container_id))
        with login(first.address, first.password.reveal()) as viewer:
            assert viewer.name == "Debian desktop"
        # After start, every process of the session is the researcher's, PID 1 included.
        running = processes(docker_client, record.container_id)
        assert running and {uid for uid, _ in running} == {"5001"}, running

        second = launcher.connect(record.id, as_user="alice")  # through the image's password command
        assert second.password.reveal() != first.password.reveal()
        assert refused(second.address, first.password.reveal())
        assert drawn(second.address, second.password.reveal()) > 1

        started = time.monotonic()
        launcher.stop(record.id)
        assert time.monotonic() - started < 2.0
        assert docker_client.containers.list(all=True, filters={"id": record.container_id}) == []
    finally:
        launcher.close()


def test_a_real_desktop_session_through_the_api(stack, docker_client, scope, tmp_path, desktop):
    data_root = tmp_path / "fs"
    make_data(data_root, ("alice", 5001))
    path = write_config(tmp_path, str(stack.config.stack.docker.socket), data_root,
                        launcher={"environments": [{"name": "desktop-base", "title": "Debian desktop",
                                                    "image": "{registry}/bl/desktop-base:latest", "cpus": 1,
                                                    "memory": "2g", "account": "image"}]})
    api = ServedApi(path, scope).start()
    try:
        created = api.call("POST", "/sessions", token="alice", json={"environment": "desktop-base"})
        assert created.status_code == 201, created.text
        session = created.json()
        first = api.call("POST", f"/sessions/{session['id']}/connect", token="alice").json()
        login(first["address"], first["password"]).close()
        second = api.call("POST", f"/sessions/{session['id']}/connect", token="alice").json()
        assert refused(second["address"], first["password"])
        login(second["address"], second["password"]).close()
        third = api.call("POST", f"/sessions/{session['id']}/connect", token="alice").json()
        assert refused(third["address"], second["password"])
        login(third["address"], third["password"]).close()
        assert api.call("DELETE", f"/sessions/{session['id']}", token="alice").status_code == 200
    finally:
        api.stop()
