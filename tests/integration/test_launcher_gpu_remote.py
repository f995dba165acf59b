"""glx sessions on remote nodes: real engines in network namespaces reached over TCP with TLS, as a
launcher reaches compute nodes. The nodes share this machine's filesystem, so the development 3DX's
socket is on them as a site's Xorg socket is on a GPU node; the launcher reads each node's 3DX cookie
through that node's engine, and the session's copy goes into its container before it starts — no
file of the launcher's host is mounted in the session.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from asci_core.gpu import xauth
from asci_core.gpu.three_dx import SESSION_COOKIE_TARGET, session_cookie_path
from asci_core.launcher.node_files import PEEK_LABEL
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, NodeSettings, NodeTLSSettings, with_registry
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.gpu_support import DevThreeDx, free_display
from tests.integration.launcher_nodes import EngineNode, EngineTls, NodeCluster
from tests.integration.launcher_support import TINY, build_launcher, tiny_environment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gpu_image(stack, docker_client) -> str:
    images_support.image(stack, docker_client, "desktop-gpu")
    return images_support.family(stack).ref("desktop-gpu", images_support.TAG)


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> EngineTls:
    return EngineTls.make(tmp_path_factory.mktemp("engine-tls"))


@pytest.fixture(scope="module")
def remote_nodes(docker_client, tls, gpu_image) -> Iterator[NodeCluster]:
    with NodeCluster(2, "gpu", tls=tls) as cluster:
        cluster.load_image(docker_client, TINY)
        first = cluster.nodes[0].client(timeout=300)
        try:  # the desktop image on the first node only: the second runs a small session
            first.images.load(b"".join(docker_client.api.get_image(gpu_image)))  # saved under this name
        finally:
            first.close()
        yield cluster


@pytest.fixture(scope="module")
def three_dx_a(config, tmp_path_factory):
    with DevThreeDx(config, tmp_path_factory.mktemp("3dx-a"), free_display(72)) as server:
        yield server


@pytest.fixture(scope="module")
def three_dx_b(config, tmp_path_factory, three_dx_a):
    with DevThreeDx(config, tmp_path_factory.mktemp("3dx-b"), free_display(three_dx_a.display + 1)) as server:
        yield server


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


def remote(node: EngineNode, tls: EngineTls, three_dx: DevThreeDx, site: str) -> NodeSettings:
    return NodeSettings(name=node.name, url=node.tcp_url, cpus=2.0, memory="4g", gpus=0, timeout=30.0,
                        labels={"site": site},
                        tls=NodeTLSSettings(tls.ca_cert, tls.client_cert, tls.client_key),
                        gl_backends=["glx"], three_dx_display=f":{three_dx.display}",
                        three_dx_cookie=three_dx.part.cookie_file)


def inspect(node: EngineNode, container_id: str) -> dict:
    client = node.client()
    try:
        return client.api.inspect_container(container_id)
    finally:
        client.close()


def mounts_of(attrs: dict) -> list[tuple[str, str, bool]]:
    return sorted((m["Source"], m["Destination"], not m["RW"]) for m in attrs["Mounts"])


def cookie_in(node: EngineNode, container_id: str) -> tuple[tarfile.TarInfo, bytes]:
    """The session's cookie copy as the node's engine holds it in the container."""
    client = node.client()
    try:
        stream, _ = client.containers.get(container_id).get_archive(SESSION_COOKIE_TARGET)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            return member, tar.extractfile(member).read()
    finally:
        client.close()


def leftover_readers(node: EngineNode) -> list:
    client = node.client()
    try:
        return client.containers.list(all=True, filters={"label": PEEK_LABEL})
    finally:
        client.close()


def test_a_glx_session_on_a_tls_node_renders_through_virtualgl_with_its_cookie_put_in_not_mounted(
        remote_nodes, tls, three_dx_a, stack, gpu_image, scope, tmp_path):
    node = remote_nodes.nodes[0]
    # ready_check running: the session's bridge address inside the namespace node is out of this host's
    # reach, so create would wait launcher.ready_timeout for a VNC greeting (readiness is tested elsewhere).
    env = replace(with_registry(DEFAULT_ENVIRONMENT, stack.registry.address), name="gl", image=gpu_image,
                  title="GPU desktop", cpus=0.5, opengl="glx", ready_check="running")
    launcher = build_launcher(tmp_path, "", scope, [env], nodes=[remote(node, tls, three_dx_a, "a")])
    try:
        record = launcher.create("alice", "gl")
        assert record.node == node.name
        attrs = inspect(node, record.container_id)
        socket = f"/tmp/.X11-unix/X{three_dx_a.display}"
        # The node's 3DX socket alone: no cookie file of the launcher's host, none written there.
        assert mounts_of(attrs) == [(socket, socket, True)]
        assert not session_cookie_path(launcher.gl_state, record.id).exists()
        variables = dict(v.split("=", 1) for v in attrs["Config"]["Env"])
        assert variables["XAUTHORITY"] == SESSION_COOKIE_TARGET
        assert variables["ASCI_VGL_DISPLAY"] == f":{three_dx_a.display}"
        member, data = cookie_in(node, record.container_id)
        assert (member.uid, member.gid, member.mode & 0o7777) == (5001, 5001, 0o600)
        assert xauth.decode(data) == [xauth.wild_entry(three_dx_a.display,
                                                       xauth.cookie_of(three_dx_a.part.cookie_file,
                                                                       three_dx_a.display))]
        assert leftover_readers(node) == []  # the reader container is gone

        client = node.client()
        try:
            container = client.containers.get(record.container_id)

            def run(argv: list[str]) -> tuple[int, str]:
                code, out = container.exec_run(argv, user="5001:5001", environment={"DISPLAY": ":1"})
                return code, out.decode(errors="replace")

            images_support.wait_for("the session's Xvnc", lambda: run(["test", "-S", "/tmp/.X11-unix/X1"])[0] == 0,
                                    timeout=60)
            code, out = run(["asci-gl-run", "glxinfo"])
            assert code == 0, out
            assert "server glx vendor string: VirtualGL" in out and "OpenGL renderer string: llvmpipe" in out
            assert "name of display: :1" in out
            # Another user in the container cannot read the copy.
            code, out = run(["sh", "-c", f"test -r {SESSION_COOKIE_TARGET}"])
            assert code == 0
            code, _ = container.exec_run(["test", "-r", SESSION_COOKIE_TARGET], user="5002:5002")
            assert code != 0
        finally:
            client.close()
        launcher.stop(record.id)
    finally:
        for left in launcher.list():
            launcher.stop(left.id)
        launcher.close()


def test_a_session_on_node_b_gets_node_bs_3dx_and_never_node_as(
        remote_nodes, tls, three_dx_a, three_dx_b, scope, tmp_path):
    node_a, node_b = remote_nodes.nodes
    env = tiny_environment(tmp_path, "gl-b", mounts=[], allowed_groups=[], opengl="glx", node_labels={"site": "b"})
    launcher = build_launcher(tmp_path, "", scope, [env], nodes=[remote(node_a, tls, three_dx_a, "a"),
                                                                 remote(node_b, tls, three_dx_b, "b")])
    try:
        record = launcher.create("alice", "gl-b")
        assert record.node == node_b.name
        socket_b = f"/tmp/.X11-unix/X{three_dx_b.display}"
        assert mounts_of(inspect(node_b, record.container_id)) == [(socket_b, socket_b, True)]
        _, data = cookie_in(node_b, record.container_id)
        cookie_a = xauth.cookie_of(three_dx_a.part.cookie_file, three_dx_a.display)
        cookie_b = xauth.cookie_of(three_dx_b.part.cookie_file, three_dx_b.display)
        assert cookie_a != cookie_b
        assert xauth.decode(data) == [xauth.wild_entry(three_dx_b.display, cookie_b)]
        assert leftover_readers(node_b) == [] and leftover_readers(node_a) == []
        launcher.stop(record.id)
    finally:
        for left in launcher.list():
            launcher.stop(left.id)
        launcher.close()


def test_a_missing_cookie_on_the_node_refuses_the_session_in_one_line_and_leaves_nothing(
        remote_nodes, tls, three_dx_a, scope, tmp_path):
    from asci_core.launcher.errors import StartFailed

    node = remote_nodes.nodes[1]
    settings = replace(remote(node, tls, three_dx_a, "b"), three_dx_cookie=Path("/nonexistent/3dx.xauth"))
    env = tiny_environment(tmp_path, "gl", mounts=[], allowed_groups=[], opengl="glx")
    launcher = build_launcher(tmp_path, "", scope, [env], nodes=[settings])
    try:
        with pytest.raises(StartFailed, match=f"the 3DX cookie of node {node.name} is unusable") as info:
            launcher.create("alice", "gl")
        assert "\n" not in str(info.value)
        client = node.client()
        try:
            assert client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]}) == []
        finally:
            client.close()
        assert leftover_readers(node) == []
    finally:
        launcher.close()


def test_a_render_device_only_its_group_may_open_on_a_remote_node_gives_the_session_that_group(
        remote_nodes, tls, scope, tmp_path):
    import os
    import stat

    node = remote_nodes.nodes[1]
    folder = tmp_path / "dri"
    folder.mkdir()
    closed, open_ = folder / "renderD140", folder / "renderD141"
    for path, minor, mode in ((closed, 140, 0o660), (open_, 141, 0o666)):
        os.mknod(path, mode | stat.S_IFCHR, os.makedev(226, minor))
        os.chmod(path, mode)  # whatever the umask took
    os.chown(closed, 0, 4444)
    settings = NodeSettings(name=node.name, url=node.tcp_url, cpus=2.0, memory="4g", gpus=0, timeout=30.0,
                            tls=NodeTLSSettings(tls.ca_cert, tls.client_cert, tls.client_key),
                            gl_backends=["egl"], render_devices=[str(closed), str(open_)])
    envs = [tiny_environment(tmp_path, "egl-own", mounts=[], allowed_groups=[], opengl="egl", exclusive_gpus=True),
            tiny_environment(tmp_path, "egl-image", mounts=[], allowed_groups=[], opengl="egl", exclusive_gpus=True,
                             account="image")]
    launcher = build_launcher(tmp_path, "", scope, envs, nodes=[settings])
    try:
        first = launcher.create("alice", "egl-own")  # takes the first device: only group 4444 may open it
        attrs = inspect(node, first.container_id)
        assert [d["PathOnHost"] for d in attrs["HostConfig"]["Devices"]] == [str(closed)]
        assert "4444" in attrs["HostConfig"]["GroupAdd"]
        client = node.client()
        try:
            code, out = client.containers.get(first.container_id).exec_run(["id", "-G"], user="5001:5001")
        finally:
            client.close()
        assert code == 0 and "4444" in out.decode().split(), out
        # An image desktop is told the group by name and gid, after the directory's own groups.
        second = launcher.create("bob", "egl-image")  # the open device: no group needed
        variables = dict(v.split("=", 1) for v in inspect(node, second.container_id)["Config"]["Env"])
        assert "gpu4444" not in variables.get("ASCI_GROUPS", "")
        launcher.stop(first.id)
        third = launcher.create("alice", "egl-image")
        variables = dict(v.split("=", 1) for v in inspect(node, third.container_id)["Config"]["Env"])
        assert variables["ASCI_GROUPS"].split(",")[-1] == "gpu4444:4444"
        assert leftover_readers(node) == []
    finally:
        for left in launcher.list():
            launcher.stop(left.id)
        launcher.close()


def test_reader_containers_left_behind_are_swept_and_fresh_ones_kept(remote_nodes):
    from asci_core.launcher.node_files import sweep_readers

    node = remote_nodes.nodes[1]
    client = node.client()
    try:
        left = client.containers.create(TINY, command=["true"], labels={PEEK_LABEL: "1"}, network_mode="none")
        assert sweep_readers(client) == 0  # seconds old: maybe another launcher's read in progress
        assert [c.id for c in leftover_readers(node)] == [left.id]
        assert sweep_readers(client, older_than=0) == 1
        assert leftover_readers(node) == []
    finally:
        client.close()
