"""GPU environments through the launcher on the real engine: the desktop-gpu image (VirtualGL built from
the vendored source), a development 3DX, Mesa's software EGL device, and render devices reserved per session.

No GPU here: the render devices of the reservation test are device nodes made for it (a DRM major
number without a driver), enough for the engine to hand each session its own and for the test to
look; rendering itself is proven on the 3DX and on Mesa's software EGL device.
"""
from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from asci_core.gpu.three_dx import SESSION_COOKIE_TARGET, session_cookie_path
from asci_core.launcher.errors import NoCapacity
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, NodeSettings, with_registry
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.gpu_support import DevThreeDx, free_display
from tests.integration.launcher_api_support import ServedApi, write_config
from tests.integration.launcher_support import build_launcher, make_data, tiny_environment

pytestmark = pytest.mark.integration

DRM_MAJOR = 226  # /dev/dri/* on Linux


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture(scope="module")
def three_dx(config, tmp_path_factory):
    with DevThreeDx(config, tmp_path_factory.mktemp("gpu-state"), free_display(70)) as server:
        yield server


@pytest.fixture(scope="module")
def gpu_image(stack, docker_client) -> str:
    images_support.image(stack, docker_client, "desktop-gpu")
    return images_support.family(stack).ref("desktop-gpu", images_support.TAG)


def gl_environment(stack, image: str, name: str, opengl: str, **kw):
    base = with_registry(DEFAULT_ENVIRONMENT, stack.registry.address)
    return replace(base, name=name, image=image, title="GPU desktop", cpus=0.5, opengl=opengl, **kw)


def local_node(stack, **gl) -> NodeSettings:
    return NodeSettings(name="local", url=f"unix://{stack.config.stack.docker.socket}", cpus=2.0, memory="4g",
                        gpus=0, **gl)


def session_run(docker_client, container_id: str, argv: list[str], **env: str) -> tuple[int, str]:
    code, out = docker_client.containers.get(container_id).exec_run(argv, user="5001:5001", environment=env)
    return code, out.decode(errors="replace")


def wait_for_display(docker_client, container_id: str) -> None:
    images_support.wait_for("the session's Xvnc", lambda: session_run(
        docker_client, container_id, ["test", "-S", "/tmp/.X11-unix/X1"])[0] == 0, timeout=60)


def mounts_of(docker_client, container_id: str) -> list[tuple[str, str, bool]]:
    attrs = docker_client.api.inspect_container(container_id)
    return sorted((m["Source"], m["Destination"], not m["RW"]) for m in attrs["Mounts"])


def env_of(docker_client, container_id: str) -> dict[str, str]:
    attrs = docker_client.api.inspect_container(container_id)
    return dict(v.split("=", 1) for v in attrs["Config"]["Env"])


def test_a_glx_session_gets_the_3dx_socket_and_its_own_cookie_and_renders_through_virtualgl(
        stack, docker_client, scope, tmp_path, three_dx, gpu_image):
    node = local_node(stack, gl_backends=["glx"], three_dx_display=f":{three_dx.display}",
                      three_dx_cookie=three_dx.part.cookie_file)
    envs = [gl_environment(stack, gpu_image, "gl", "glx"),
            tiny_environment(tmp_path, "plain", mounts=[], allowed_groups=[])]
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, envs, nodes=[node])
    try:
        record = launcher.create("alice", "gl")
        copy = session_cookie_path(launcher.gl_state, record.id)
        socket = f"/tmp/.X11-unix/X{three_dx.display}"
        # Exactly two things of the node: the 3DX's socket (not its folder) and this session's cookie copy.
        assert mounts_of(docker_client, record.container_id) == sorted(
            [(socket, socket, True), (str(copy), SESSION_COOKIE_TARGET, True)])
        info = copy.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (5001, 0o600)
        variables = env_of(docker_client, record.container_id)
        assert variables["ASCI_VGL_DISPLAY"] == f":{three_dx.display}"
        assert variables["XAUTHORITY"] == SESSION_COOKIE_TARGET
        assert not docker_client.api.inspect_container(record.container_id)["HostConfig"]["Devices"]

        wait_for_display(docker_client, record.container_id)
        code, out = session_run(docker_client, record.container_id, ["asci-gl-run", "glxinfo"], DISPLAY=":1")
        assert code == 0, out
        assert "server glx vendor string: VirtualGL" in out and "OpenGL renderer string: llvmpipe" in out
        assert "name of display: :1" in out  # the application's display stays the session's Xvnc
        code, listing = session_run(docker_client, record.container_id, ["ls", "-A", "/tmp/.X11-unix"])
        assert code == 0 and sorted(listing.split()) == sorted(["X1", f"X{three_dx.display}"])

        # A session of an environment without OpenGL on the same node gets none of it.
        plain = launcher.create("bob", "plain")
        assert mounts_of(docker_client, plain.container_id) == []
        assert not docker_client.api.inspect_container(plain.container_id)["HostConfig"]["Devices"]
        assert not {"XAUTHORITY", "ASCI_VGL_DISPLAY"} & set(env_of(docker_client, plain.container_id))
        assert not session_cookie_path(launcher.gl_state, plain.id).exists()

        launcher.stop(record.id)
        assert not copy.exists()
    finally:
        for left in launcher.list():
            launcher.stop(left.id)
        launcher.close()


def test_reconcile_removes_the_cookie_of_a_session_whose_container_vanished(
        stack, docker_client, scope, tmp_path, three_dx):
    node = local_node(stack, gl_backends=["glx"], three_dx_display=f":{three_dx.display}",
                      three_dx_cookie=three_dx.part.cookie_file)
    env = tiny_environment(tmp_path, "gl-tiny", mounts=[], allowed_groups=[], opengl="glx")
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], nodes=[node])
    try:
        record = launcher.create("alice", "gl-tiny")
        copy = session_cookie_path(launcher.gl_state, record.id)
        assert copy.exists()
        docker_client.api.remove_container(record.container_id, force=True)
        report = launcher.reconcile()
        assert record.id in report.closed and not copy.exists()
    finally:
        launcher.close()


def test_an_egl_session_renders_on_mesas_software_device_without_any_3dx_mount(
        stack, docker_client, scope, tmp_path, gpu_image):
    node = local_node(stack, gl_backends=["egl"], render_devices=[])
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope,
                              [gl_environment(stack, gpu_image, "gl-egl", "egl")], nodes=[node])
    try:
        record = launcher.create("alice", "gl-egl")
        assert mounts_of(docker_client, record.container_id) == []
        assert env_of(docker_client, record.container_id)["ASCI_VGL_DISPLAY"] == "egl"
        assert "XAUTHORITY" not in env_of(docker_client, record.container_id)
        wait_for_display(docker_client, record.container_id)
        code, out = session_run(docker_client, record.container_id, ["asci-gl-run", "glxinfo"], DISPLAY=":1")
        assert code == 0, out
        assert "server glx vendor string: VirtualGL" in out and "OpenGL renderer string: llvmpipe" in out
        launcher.stop(record.id)
    finally:
        launcher.close()


def fake_render_nodes(folder: Path, *minors: int) -> list[str]:
    folder.mkdir()
    paths = []
    for minor in minors:
        path = folder / f"renderD{minor}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(DRM_MAJOR, minor))
        paths.append(str(path))
    return paths


def test_exclusive_egl_sessions_each_get_their_own_render_device_and_no_other(
        stack, docker_client, scope, tmp_path):
    devices = fake_render_nodes(tmp_path / "dri", 128, 129)
    node = local_node(stack, gl_backends=["egl"], render_devices=devices)
    env = tiny_environment(tmp_path, "gl-own", mounts=[], opengl="egl", exclusive_gpus=True)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], nodes=[node])
    try:
        first, second = launcher.create("alice", "gl-own"), launcher.create("bob", "gl-own")
        given = []
        for record in (first, second):
            host = docker_client.api.inspect_container(record.container_id)["HostConfig"]
            (device,) = host["Devices"]
            given.append(device["PathOnHost"])
            assert device["PathInContainer"] == f"/dev/dri/{Path(device['PathOnHost']).name}"
            code, listing = session_run(docker_client, record.container_id, ["ls", "/dev/dri"])
            assert code == 0 and listing.split() == [Path(device["PathOnHost"]).name]
            assert env_of(docker_client, record.container_id)["ASCI_VGL_DISPLAY"] == device["PathInContainer"]
        assert sorted(given) == devices
        # Both devices are held: a third exclusive session is refused with the reason.
        with pytest.raises(NoCapacity, match="local: all 2 render devices are in use, exclusive use needs an idle one"):
            launcher.create("alice", "gl-own")
        launcher.stop(first.id)
        third = launcher.create("alice", "gl-own")
        (device,) = docker_client.api.inspect_container(third.container_id)["HostConfig"]["Devices"]
        assert device["PathOnHost"] == given[0]
    finally:
        for record in launcher.list():
            launcher.stop(record.id)
        launcher.close()


def test_a_pool_without_a_gl_node_refuses_a_glx_environment_with_the_reason(
        stack, docker_client, scope, tmp_path, gpu_image):
    env = gl_environment(stack, gpu_image, "gl", "glx")
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env],
                              nodes=[local_node(stack, gl_backends=[])])
    try:
        with pytest.raises(NoCapacity, match="local: has no glx OpenGL back end"):
            launcher.create("alice", "gl")
        assert launcher.list() == []
    finally:
        launcher.close()
    # The API answers the same, through Launcher.from_config.
    data_root = tmp_path / "fs"
    make_data(data_root, ("alice", 5001))
    (tmp_path / "api").mkdir()
    path = write_config(tmp_path / "api", str(stack.config.stack.docker.socket), data_root, launcher={
        "environments": [{"name": "gl", "image": gpu_image, "opengl": "glx", "allowed_groups": ["i03"]}],
        "nodes": [{"name": "local", "url": f"unix://{stack.config.stack.docker.socket}", "cpus": 2.0,
                   "memory": "4g", "gpus": 0, "gl_backends": []}]})
    api = ServedApi(path, scope).start()
    try:
        answer = api.call("POST", "/sessions", token="alice", json={"environment": "gl"})
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"] == "no_capacity" and "local: has no glx OpenGL back end" in body["reason"]
        assert docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]}) == []
    finally:
        api.stop()
