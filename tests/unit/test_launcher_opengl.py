"""OpenGL back ends in the launcher: settings, placement by back end, render device reservations, the wiring."""
from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from asci_core.config import ConfigError, parse_config
from asci_core.gpu import xauth
from asci_core.gpu.settings import ThreeDxSettings
from asci_core.gpu.three_dx import SESSION_COOKIE_TARGET, session_cookie_path
from asci_core.launcher import opengl
from asci_core.launcher.inventory import (Capacity, Reservation, node_loads, render_device_for,
                                          reservation_from_container)
from asci_core.launcher.placement import Demand, NodeLoad, NoNodeFits, backend_for, place, why_not
from asci_core.launcher.directory import Researcher
from asci_core.launcher.session_spec import create_kwargs
from asci_core.launcher.settings import EnvironmentSettings, NodeSettings

GiB = 1024 ** 3


def node(name: str, **kw) -> NodeLoad:
    return NodeLoad(name, 8, 32 * GiB, **kw)


def demand(opengl_: str, exclusive: bool = False) -> Demand:
    return Demand(1, GiB, opengl=opengl_, exclusive_gpus=exclusive)


def refusals(d: Demand, nodes: list[NodeLoad]) -> dict[str, str]:
    with pytest.raises(NoNodeFits) as info:
        place(d, nodes)
    assert "\n" not in str(info.value)
    return dict(info.value.reasons)


# --- placement ----------------------------------------------------------------


def test_a_glx_environment_goes_only_where_a_3dx_is():
    plain, egl, glx = node("a"), node("b", backends=frozenset({"egl"})), node("c", backends=frozenset({"glx"}))
    assert place(demand("glx"), [plain, egl, glx]).name == "c"
    assert refusals(demand("glx"), [plain, egl]) == {"a": "has no glx OpenGL back end",
                                                    "b": "has no glx OpenGL back end"}


def test_the_none_fits_answer_names_the_missing_back_end():
    with pytest.raises(NoNodeFits) as info:
        place(demand("egl"), [node("a")])
    assert str(info.value) == ("no node can take a session needing 1 CPUs, 1 GiB, OpenGL egl: "
                               "a: has no egl OpenGL back end")


def test_any_takes_glx_first_then_egl():
    both = node("a", backends=frozenset({"glx", "egl"}))
    assert backend_for(both, demand("any")) == "glx"
    assert backend_for(node("b", backends=frozenset({"egl"})), demand("any")) == "egl"
    assert why_not(node("c"), demand("any")) == "has no OpenGL back end (glx or egl)"
    assert backend_for(both, demand("none")) is None


def test_exclusive_egl_needs_an_idle_device_and_shared_egl_one_not_held_exclusively():
    egl = frozenset({"egl"})
    busy = node("a", backends=egl, render_devices=2, render_devices_free=2, render_devices_idle=0)
    held = node("b", backends=egl, render_devices=1, render_devices_free=0, render_devices_idle=0)
    software = node("c", backends=egl)  # a driver's own EGL device, nothing to hand out
    assert why_not(busy, demand("egl", True)) == "all 2 render devices are in use, exclusive use needs an idle one"
    assert why_not(busy, demand("egl")) is None
    assert why_not(held, demand("egl")) == "all 1 render devices are held for exclusive use"
    assert why_not(software, demand("egl")) is None
    assert why_not(software, demand("egl", True)) == "has no render device for exclusive use"
    # any + exclusive can only be egl: a 3DX is shared by design.
    assert why_not(node("d", backends=frozenset({"glx"})), demand("any", True)) == "has no egl OpenGL back end"


def test_sessions_without_opengl_spare_the_gl_nodes():
    gl, plain = node("a", backends=frozenset({"glx"})), node("b", reserved_cpus=6)
    assert place(demand("none"), [gl, plain]).name == "b"
    assert place(demand("glx"), [gl, plain]).name == "a"


def test_two_sessions_never_get_the_same_device_for_exclusive_use():
    capacity = Capacity(8, 32 * GiB, 0, gl_backends=frozenset({"egl"}),
                        render_devices=("/dev/dri/renderD128", "/dev/dri/renderD129"))
    first = render_device_for(capacity, [], "n1", exclusive=True)
    assert first == ("/dev/dri/renderD128",)
    taken = [Reservation("s1", "n1", "alice", "gl", 1, GiB, opengl="egl", render_devices=first,
                         render_exclusive=True)]
    second = render_device_for(capacity, taken, "n1", exclusive=True)
    assert second == ("/dev/dri/renderD129",)
    both = taken + [Reservation("s2", "n1", "bob", "gl", 1, GiB, opengl="egl", render_devices=second,
                                render_exclusive=True)]
    assert render_device_for(capacity, both, "n1", exclusive=True) == ()
    assert render_device_for(capacity, both, "n1", exclusive=False) == ()
    (load,) = node_loads({"n1": capacity}, both)
    assert (load.render_devices, load.render_devices_free, load.render_devices_idle) == (2, 0, 0)
    assert why_not(load, demand("egl")) == "all 2 render devices are held for exclusive use"
    # Another node's reservations take nothing here.
    (other,) = node_loads({"n2": capacity}, both)
    assert other.render_devices_idle == 2


def test_shared_egl_takes_the_least_used_device_and_exclusive_avoids_used_ones():
    capacity = Capacity(8, 32 * GiB, 0, render_devices=("/dev/dri/renderD128", "/dev/dri/renderD129"))
    shared = [Reservation("s1", "n1", "alice", "gl", 1, GiB, opengl="egl", render_devices=("/dev/dri/renderD128",))]
    assert render_device_for(capacity, shared, "n1", exclusive=False) == ("/dev/dri/renderD129",)
    assert render_device_for(capacity, shared, "n1", exclusive=True) == ("/dev/dri/renderD129",)


def test_render_reservations_travel_in_container_labels():
    given = Reservation("0123456789abcdef", "n1", "alice", "gl", 1, GiB, opengl="egl",
                        render_devices=("/dev/dri/renderD128",), render_exclusive=True)
    read = reservation_from_container("n1", {"Labels": given.labels(), "Id": "c1", "State": "running"})
    assert (read.opengl, read.render_devices, read.render_exclusive) == ("egl", ("/dev/dri/renderD128",), True)
    plain = Reservation("0123456789abcdef", "n1", "alice", "base", 1, GiB)
    assert not any(k.startswith(("asci.opengl", "asci.render")) for k in plain.labels())


# --- settings -------------------------------------------------------------------


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "asci.yaml")
    assert "\n" not in str(info.value)
    return str(info.value)


def launcher_yaml(env_extra: str = "", node_extra: str = "", backend: str = "") -> str:
    return f"""
launcher:
  {backend}
  environments:
    - {{name: gl, image: "reg.example:5000/bl/desktop-gpu:1", {env_extra}}}
  nodes:
    - {{name: node1, url: "unix:///run/docker.sock", {node_extra}}}
"""


def test_gl_settings_load():
    config = parse_config(launcher_yaml(
        "opengl: egl, exclusive_gpus: true",
        'gl_backends: [glx, egl], three_dx_display: ":0", three_dx_cookie: /etc/3dx.xauth, '
        "render_devices: [/dev/dri/renderD128, /dev/nvidia0, /dev/nvidiactl]"), "asci.yaml")
    env, node_ = config.launcher.environments[0], config.launcher.nodes[0]
    assert (env.opengl, env.exclusive_gpus) == ("egl", True)
    assert node_.gl_backends == ["glx", "egl"] and node_.three_dx_cookie == Path("/etc/3dx.xauth")
    assert opengl.assignable(node_.render_devices) == ("/dev/dri/renderD128", "/dev/nvidia0")


@pytest.mark.parametrize("env_extra, node_extra, backend, key, words", [
    ("opengl: vulkan", "", "", "launcher.environments[0].opengl", "expected one of none, glx, egl, any"),
    ("opengl: glx, exclusive_gpus: true", "", "", "launcher.environments[0].exclusive_gpus", "shared by design"),
    ("", "gl_backends: [cuda]", "", "launcher.nodes[0].gl_backends[0]", "expected one of glx, egl"),
    ("", "gl_backends: [glx]", "", "launcher.nodes[0].gl_backends", "three_dx_display and three_dx_cookie"),
    ("", 'gl_backends: [glx], three_dx_display: "0", three_dx_cookie: /x', "", "launcher.nodes[0].three_dx_display",
     "expected a display such as :0"),
    ("", 'three_dx_display: ":0"', "", "launcher.nodes[0].three_dx_display", "only when gl_backends lists glx"),
    ("", "gl_backends: [egl], render_devices: [/dev/sda]", "", "launcher.nodes[0].render_devices[0]",
     "expected a device such as /dev/dri/renderD128"),
    ("", "render_devices: [/dev/dri/renderD128]", "", "launcher.nodes[0].render_devices", "only when gl_backends"),
    ("opengl: glx", "", "backend: swarm\n  swarm: {manager: 'unix:///run/docker.sock'}",
     "launcher.environments[0].opengl", "Swarm backend"),
])
def test_gl_mistakes_are_one_line_naming_the_key(env_extra, node_extra, backend, key, words):
    message = config_error(launcher_yaml(env_extra, node_extra, backend))
    assert key in message and words in message, message


def test_glx_is_accepted_on_a_remote_node():
    remote = (launcher_yaml("", 'gl_backends: [glx], three_dx_display: ":0", three_dx_cookie: /etc/3dx.xauth')
              .replace("unix:///run/docker.sock", "tcp://127.0.0.1:2375"))
    assert parse_config(remote).launcher.nodes[0].gl_backends == ["glx"]


def test_the_local_node_takes_the_dev_3dx_and_dri_render_nodes(tmp_path: Path):
    local = NodeSettings(name="local", url="unix:///run/docker.sock")
    dri = tmp_path / "dri"
    dri.mkdir()
    (dri / "renderD128").touch()
    (dri / "card0").touch()
    filled = opengl.local_defaults(local, ThreeDxSettings(enabled=True, display=61), tmp_path / "state", dri)
    assert filled.gl_backends == ["glx", "egl"]
    assert filled.three_dx_display == ":61"
    assert filled.three_dx_cookie == tmp_path / "state" / "gpu" / "three-dx.xauth"
    assert filled.render_devices == [str(dri / "renderD128")]
    bare = opengl.local_defaults(local, ThreeDxSettings(enabled=False), tmp_path, tmp_path / "no-dri")
    assert bare.gl_backends == [] and bare.render_devices is None
    # Configured settings win, and a remote node is never given the launcher host's GPU.
    configured = replace(local, gl_backends=["egl"], render_devices=["/dev/dri/renderD129"])
    assert opengl.local_defaults(configured, ThreeDxSettings(enabled=True), tmp_path, dri) == configured
    remote = NodeSettings(name="n2", url="tcp://127.0.0.1:2375")
    assert opengl.local_defaults(remote, ThreeDxSettings(enabled=True), tmp_path, dri) == remote


# --- what a session gets ----------------------------------------------------------


ALICE = Researcher("alice", 5001, 5001, ("i03",), group_ids=(6001,))


def kwargs_for(env: EnvironmentSettings, access: opengl.GlAccess | None) -> dict:
    kwargs = create_kwargs(env, ALICE, Reservation("0123456789abcdef", "n1", "alice", env.name, 1, GiB), [], "net", {})
    return kwargs if access is None else opengl.apply(kwargs, access)


def test_a_glx_session_gets_the_socket_and_its_own_cookie_of_its_own_node(tmp_path: Path):
    server = tmp_path / "a.xauth"
    xauth.write_private(server, [xauth.wild_entry(3, b"A" * 16)])
    other = tmp_path / "b.xauth"
    xauth.write_private(other, [xauth.wild_entry(7, b"B" * 16)])
    node_a = NodeSettings(name="a", url="unix:///run/a.sock", gl_backends=["glx"], three_dx_display=":3",
                          three_dx_cookie=server)
    state = tmp_path / "state"
    access = opengl.grant(opengl.GlChoice("glx"), node_a, "0123456789abcdef", 5001, 5001, state)
    kwargs = kwargs_for(EnvironmentSettings(name="gl", image="x", opengl="glx"), access)
    mounts = [(m["Source"], m["Target"], m["ReadOnly"]) for m in kwargs["mounts"]]
    copy = session_cookie_path(state, "0123456789abcdef")
    assert mounts == [("/tmp/.X11-unix/X3", "/tmp/.X11-unix/X3", True), (str(copy), SESSION_COOKIE_TARGET, True)]
    assert kwargs["environment"]["ASCI_VGL_DISPLAY"] == ":3"
    assert kwargs["environment"]["XAUTHORITY"] == SESSION_COOKIE_TARGET
    assert "devices" not in kwargs
    info = copy.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (5001, 0o600)
    assert xauth.cookie_of(copy, 3) == b"A" * 16  # node a's cookie, never node b's
    opengl.revoke(state, "0123456789abcdef")
    assert not copy.exists()


def test_a_3dx_socket_elsewhere_is_mounted_where_x_clients_look(tmp_path: Path):
    server = tmp_path / "s.xauth"
    xauth.write_private(server, [xauth.wild_entry(0, b"C" * 16)])
    node_ = NodeSettings(name="a", url="unix:///run/a.sock", gl_backends=["glx"],
                         three_dx_display="/run/3dx/X0", three_dx_cookie=server)
    access = opengl.grant(opengl.GlChoice("glx"), node_, "fedcba9876543210", 5001, 5001, tmp_path)
    assert (access.mounts[0].source, access.mounts[0].target) == ("/run/3dx/X0", "/tmp/.X11-unix/X0")


def test_an_unreadable_3dx_cookie_is_a_one_line_refusal(tmp_path: Path):
    node_ = NodeSettings(name="a", url="unix:///run/a.sock", gl_backends=["glx"], three_dx_display=":3",
                         three_dx_cookie=tmp_path / "missing.xauth")
    with pytest.raises(opengl.GlUnavailable, match="the 3DX cookie of node a is unusable"):
        opengl.grant(opengl.GlChoice("glx"), node_, "0123456789abcdef", 5001, 5001, tmp_path)


def test_an_egl_session_gets_only_its_device_and_nvidia_its_control_devices(tmp_path: Path):
    node_ = NodeSettings(name="a", url="unix:///run/a.sock", gl_backends=["egl"],
                         render_devices=["/dev/dri/renderD128", "/dev/dri/renderD129", "/dev/nvidia0",
                                         "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"])
    dri = opengl.grant(opengl.GlChoice("egl", ("/dev/dri/renderD129",)), node_, "s", 5001, 5001, tmp_path)
    assert dri.devices == ["/dev/dri/renderD129:/dev/dri/renderD129:rwm"] and dri.mounts == []
    assert dri.environment == {"ASCI_VGL_DISPLAY": "/dev/dri/renderD129"}
    nvidia = opengl.grant(opengl.GlChoice("egl", ("/dev/nvidia1",)), node_, "s", 5001, 5001, tmp_path)
    assert nvidia.devices == ["/dev/nvidia1:/dev/nvidia1:rwm", "/dev/nvidiactl:/dev/nvidiactl:rwm",
                              "/dev/nvidia-uvm:/dev/nvidia-uvm:rwm"]
    assert nvidia.environment == {"ASCI_VGL_DISPLAY": "egl"}
    software = opengl.grant(opengl.GlChoice("egl"), replace(node_, render_devices=[]), "s", 5001, 5001, tmp_path)
    assert (software.devices, software.environment) == ([], {"ASCI_VGL_DISPLAY": "egl"})


def test_a_device_only_its_group_may_open_adds_that_group(tmp_path: Path):
    device = tmp_path / "renderD130"
    device.touch()
    os.chown(device, 0, 4444)
    device.chmod(0o660)
    node_ = NodeSettings(name="a", url="unix:///run/a.sock", gl_backends=["egl"], render_devices=[str(device)])
    access = opengl.grant(opengl.GlChoice("egl", (str(device),)), node_, "s", 5001, 5001, tmp_path)
    assert access.group_add == ["4444"]
    kwargs = opengl.apply(kwargs_for(EnvironmentSettings(name="gl", image="x", account="engine"), None), access)
    assert kwargs["group_add"] == ["4444", "6001"]
    device.chmod(0o666)
    assert opengl.grant(opengl.GlChoice("egl", (str(device),)), node_, "s", 5001, 5001, tmp_path).group_add == []


def test_a_session_without_opengl_gets_nothing_of_it():
    kwargs = kwargs_for(EnvironmentSettings(name="base", image="x"), None)
    assert kwargs["mounts"] == [] and "devices" not in kwargs
    assert not any(k in kwargs["environment"] for k in ("XAUTHORITY", "ASCI_VGL_DISPLAY"))


def test_sweep_removes_cookies_of_sessions_no_longer_active(tmp_path: Path):
    for session in ("aaaa", "bbbb"):
        xauth.write_private(session_cookie_path(tmp_path, session), [xauth.wild_entry(1, b"x" * 16)])
    assert opengl.sweep(tmp_path, lambda: {"aaaa"}) == ["bbbb"]
    assert session_cookie_path(tmp_path, "aaaa").exists() and not session_cookie_path(tmp_path, "bbbb").exists()
    assert opengl.sweep(tmp_path / "nothing", set) == []


def test_from_config_gives_the_local_node_the_development_3dx(tmp_path: Path):
    from asci_core.launcher.sessions import Launcher

    config = parse_config(f"stack:\n  state_dir: {tmp_path}\n  docker: {{socket: /run/x/docker.sock}}\n"
                          f"gpu:\n  three_dx: {{enabled: true, display: 63}}\n")
    launcher = Launcher.from_config(config)
    try:
        local = launcher.pool.nodes["local"].settings
        assert "glx" in local.gl_backends and local.three_dx_display == ":63"
        assert local.three_dx_cookie == tmp_path / "gpu" / "three-dx.xauth"
        assert launcher.gl_state == tmp_path / "launcher"
    finally:
        launcher.close()


# --- remote nodes ---------------------------------------------------------------


REMOTE = NodeSettings(name="far", url="tcp://10.0.0.9:2376", gl_backends=["glx", "egl"], three_dx_display=":0",
                      three_dx_cookie=Path("/etc/3dx.xauth"), render_devices=["/dev/dri/renderD128"])


def test_a_glx_session_on_a_remote_node_mounts_the_socket_alone_and_writes_nothing_here(tmp_path: Path):
    access = opengl.grant(opengl.GlChoice("glx"), REMOTE, "0123456789abcdef", 5001, 5002, tmp_path)
    kwargs = kwargs_for(EnvironmentSettings(name="gl", image="x", opengl="glx"), access)
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in kwargs["mounts"]] == [
        ("/tmp/.X11-unix/X0", "/tmp/.X11-unix/X0", True)]
    assert kwargs["environment"]["XAUTHORITY"] == SESSION_COOKIE_TARGET
    assert kwargs["environment"]["ASCI_VGL_DISPLAY"] == ":0"
    assert access.on_node == opengl.NodeSteps("far", cookie="/etc/3dx.xauth", display=0, uid=5001, gid=5002)
    assert not any(tmp_path.rglob("*"))  # no cookie copy on the launcher's host


def test_the_cookie_archive_holds_one_private_copy_owned_by_the_session_user():
    import io
    import tarfile

    archive = opengl.cookie_archive(7, b"K" * 16, 5001, 5002)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        folder, target = SESSION_COOKIE_TARGET.lstrip("/").rsplit("/", 1)
        assert sorted(members) == [folder, f"{folder}/{target}"]
        for member, mode in ((members[folder], 0o700), (members[f"{folder}/{target}"], 0o600)):
            assert (member.uid, member.gid, member.mode) == (5001, 5002, mode)
        data = tar.extractfile(members[f"{folder}/{target}"]).read()
    assert xauth.decode(data) == [xauth.wild_entry(7, b"K" * 16)]


def test_device_groups_only_for_devices_closed_to_others():
    owners = [(44, 0o660), (109, 0o666), None, (110, 0o604), (44, 0o660)]
    assert opengl.device_groups(owners) == [("gpu44", 44), ("gpu110", 110)]


def test_device_groups_join_the_directorys_groups_for_image_desktops():
    image = opengl.with_groups({"environment": {"ASCI_GROUPS": "i03:7003"}}, [("gpu4109", 4109), ("i03", 7003)],
                               "image")
    assert image["environment"]["ASCI_GROUPS"] == "i03:7003,gpu4109:4109"
    assert image["group_add"] == ["4109", "7003"]
    assert opengl.with_groups({"environment": {}}, [("gpu4109", 4109)], "image")["environment"] == {
        "ASCI_GROUPS": "gpu4109:4109"}
    engine = opengl.with_groups({"group_add": ["6001"], "environment": {}}, [("gpu109", 109)], "engine")
    assert engine == {"group_add": ["109", "6001"], "environment": {}}
    assert opengl.with_groups({"environment": {}}, [], "image") == {"environment": {}}
    # A system group (render is often 100-199) is refused for image desktops before anything starts.
    with pytest.raises(opengl.GlUnavailable, match="gid 109.*account: image"):
        opengl.with_groups({"environment": {}}, [("gpu109", 109)], "image")
    assert opengl.with_groups({"environment": {}}, [("gpu109", 109)], "engine")["group_add"] == ["109"]


def test_an_egl_session_on_a_remote_node_learns_its_devices_owner_on_the_node(tmp_path: Path):
    access = opengl.grant(opengl.GlChoice("egl", ("/dev/dri/renderD128",)), REMOTE, "s", 5001, 5001, tmp_path)
    assert access.groups == [] and access.on_node == opengl.NodeSteps("far", devices=("/dev/dri/renderD128",))
    assert access.devices == ["/dev/dri/renderD128:/dev/dri/renderD128:rwm"]
