"""GPU desktops wired for real: VirtualGL built from the site's source, a software 3DX, the session's Xvnc.

The desktop-gpu image is built through `asci images build`'s code with autobuild.image_files pointing at
the vendored VirtualGL source (tests/integration/images_support.CONTEXT_FILES).
"""
from __future__ import annotations

import time

import pytest

from asci_core.gpu import xauth
from asci_core.gpu.three_dx import grant_session, revoke_session, socket_path
from asci_core.gpu.x11_probe import x_connection
from tests.conftest import LABELS
from tests.integration.gpu_support import DevThreeDx, free_display
from tests.integration.images_support import address, image, wait_for
from tests.integration.rfb_client import RfbClient

pytestmark = pytest.mark.integration

UID, GID = 4321, 4322
PASSWORD = "Gp4-desk"
SESSION_DISPLAY = {"DISPLAY": ":1"}  # the session's own Xvnc, the 2DX


@pytest.fixture(scope="module")
def three_dx(config, tmp_path_factory):
    with DevThreeDx(config, tmp_path_factory.mktemp("gpu-state"), free_display()) as server:
        yield server


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    path = tmp_path_factory.mktemp("vnc") / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o644)
    return path


def start_desktop(client, ref: str, secret, *, environment=None, volumes=None):
    container = client.containers.run(
        ref, detach=True, name=f"asci-test-gpu-{time.monotonic_ns()}", labels=LABELS,
        environment={"ASCI_USER": "alice", "ASCI_UID": str(UID), "ASCI_GID": str(GID),
                     "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc", **(environment or {})},
        volumes={str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}, **(volumes or {})})
    ip = address(container)
    wait_for("the RFB banner", lambda: RfbClient(ip).banner(), timeout=30)
    wait_for("the session's display", lambda: run(container, ["test", "-S", "/tmp/.X11-unix/X1"])[0] == 0)
    return container, ip


def run(container, argv: list[str], **env: str) -> tuple[int, str]:
    """ARGV in the session's container as the researcher; its exit code and output."""
    code, output = container.exec_run(argv, user=f"{UID}:{GID}", environment=env)
    return code, output.decode(errors="replace")


@pytest.fixture(scope="module")
def gpu_session(stack, docker_client, three_dx, secret, tmp_path_factory):
    ref = image(stack, docker_client, "desktop-gpu").ref
    state = tmp_path_factory.mktemp("sessions")
    access = grant_session(three_dx.part.cookie_file, three_dx.display, state, "alice-gpu", uid=UID, gid=GID)
    container, ip = start_desktop(docker_client, ref, secret, environment=access.environment,
                                  volumes=access.docker_volumes())
    yield container, ip, three_dx
    container.remove(force=True)
    revoke_session(state, "alice-gpu")


def test_vglrun_on_the_session_display_renders_on_the_3dx(gpu_session):
    container, _, server = gpu_session
    code, out = run(container, ["vglrun", "-d", f":{server.display}", "glxinfo"], **SESSION_DISPLAY)
    assert code == 0, out
    assert "server glx vendor string: VirtualGL" in out
    assert "OpenGL renderer string: llvmpipe" in out
    # The application's own display stays the session's Xvnc.
    assert "name of display: :1" in out


def test_asci_gl_run_uses_virtualgl_only_when_the_session_has_a_back_end(gpu_session):
    container, _, _ = gpu_session
    code, through = run(container, ["asci-gl-run", "glxinfo"], **SESSION_DISPLAY)
    assert code == 0 and "server glx vendor string: VirtualGL" in through, through
    code, direct = run(container, ["asci-gl-run", "glxinfo"], ASCI_VGL_DISPLAY="", **SESSION_DISPLAY)
    assert code == 0, direct
    assert "server glx vendor string: SGI" in direct  # Xvnc's own GLX
    assert run(container, ["asci-gl-run"])[0] == 2


def test_a_gl_application_draws_its_window_on_the_2dx(gpu_session):
    container, ip, _ = gpu_session

    def frame():
        with RfbClient(ip) as client:
            client.login(PASSWORD)
            return client.full_frame()

    before = frame()
    exec_id = container.client.api.exec_create(
        container.id, ["asci-gl-run", "/opt/VirtualGL/bin/glxspheres64"], user=f"{UID}:{GID}", environment=SESSION_DISPLAY)
    container.client.api.exec_start(exec_id, detach=True)
    try:
        def drawn():
            after = frame()
            changed = [after.pixels[i:i + 3] for i in range(0, len(after.pixels), 4)
                       if after.pixels[i:i + 3] != before.pixels[i:i + 3]]
            # A window of shaded spheres: a large area in many colours (not a blank or one-colour rectangle).
            return (len(changed), len(set(changed))) if len(changed) > 100_000 and len(set(changed)) > 50 else None
        changed, colours = wait_for("glxspheres' window on the 2DX", drawn, timeout=30, every=0.5)
        assert container.client.api.exec_inspect(exec_id)["Running"]
    finally:
        run(container, ["pkill", "-x", "glxspheres64"])
    assert changed > 100_000 and colours > 50


def test_without_the_cookie_the_3dx_refuses(gpu_session):
    container, _, server = gpu_session
    code, out = run(container, ["vglrun", "-d", f":{server.display}", "glxinfo"], XAUTHORITY="/nonexistent",
                    **SESSION_DISPLAY)
    assert code != 0
    assert "Authorization required" in out or "Invalid MIT-MAGIC-COOKIE-1" in out, out
    # From the node too: no cookie and a wrong cookie are refused, the right one accepted.
    sock = socket_path(server.display)
    assert x_connection(sock, None)[0] is False
    assert x_connection(sock, b"\0" * 16)[0] is False
    assert x_connection(sock, xauth.cookie_of(server.part.cookie_file, server.display))[0] is True


def test_the_egl_back_end_needs_no_3dx(stack, docker_client, secret):
    ref = image(stack, docker_client, "desktop-gpu").ref
    container, _ = start_desktop(docker_client, ref, secret, environment={"ASCI_VGL_DISPLAY": "egl"})
    try:
        mounts = [m["Destination"] for m in container.attrs["Mounts"]]
        assert mounts == ["/run/secrets/vnc"]
        code, out = run(container, ["asci-gl-run", "glxinfo"], **SESSION_DISPLAY)
        assert code == 0, out
        assert "server glx vendor string: VirtualGL" in out
        assert "OpenGL renderer string: llvmpipe" in out
    finally:
        container.remove(force=True)


def test_a_desktop_without_gpu_back_end_has_no_socket_cookie_or_device(stack, docker_client, secret, three_dx):
    ref = image(stack, docker_client, "desktop-base").ref
    container, _ = start_desktop(docker_client, ref, secret)
    try:
        container.reload()
        assert [m["Destination"] for m in container.attrs["Mounts"]] == ["/run/secrets/vnc"]
        assert not container.attrs["HostConfig"]["Devices"]
        assert not any(v.startswith(("XAUTHORITY=", "ASCI_VGL_DISPLAY=")) for v in container.attrs["Config"]["Env"])
        code, listing = run(container, ["ls", "-A", "/tmp/.X11-unix"])
        assert code == 0 and listing.split() == ["X1"]
        assert run(container, ["test", "-e", "/dev/dri"])[0] != 0
    finally:
        container.remove(force=True)
