"""The desktop base image, run for real: RFB, VNC passwords, a drawn desktop, the researcher's uid, fast stop."""
from __future__ import annotations

import time

import pytest

from tests.conftest import LABELS
from tests.integration.images_support import address, image, run_desktop, set_password, wait_for
from tests.integration.rfb_client import AuthFailed, RfbClient

pytestmark = pytest.mark.integration

UID, GID = 4321, 4322
TITLE = "Test Beamline (XFM)"
FIRST = "Fi7st-pw"


@pytest.fixture(scope="module")
def base(stack, docker_client):
    return image(stack, docker_client, "desktop-base")


@pytest.fixture(scope="module")
def desktop(base, docker_client, tmp_path_factory):
    """One running session for the module, its first password given as a file (like a secret)."""
    secret = tmp_path_factory.mktemp("vnc") / "password"
    secret.write_text(FIRST + "\n")
    secret.chmod(0o644)
    name = f"asci-test-desktop-{time.monotonic_ns()}"
    container = docker_client.containers.run(
        base.ref, detach=True, name=name, labels=LABELS,
        environment={"ASCI_USER": "alice", "ASCI_UID": str(UID), "ASCI_GID": str(GID),
                     "ASCI_ENVIRONMENT_TITLE": TITLE, "ASCI_VNC_PASSWORD_FILE": "/run/secrets/vnc"},
        volumes={str(secret): {"bind": "/run/secrets/vnc", "mode": "ro"}})
    ip = address(container)
    wait_for("the RFB banner", lambda: RfbClient(ip).banner(), timeout=30)
    yield container, ip
    container.remove(force=True)


def login(ip: str, password: str) -> RfbClient:
    client = RfbClient(ip)
    try:
        client.login(password)
    except BaseException:
        client.close()
        raise
    return client


def test_desktop_answers_the_rfb_handshake_and_reports_healthy(desktop):
    container, ip = desktop
    with RfbClient(ip) as client:
        assert client.banner() == b"RFB 003.008\n"
        assert client.security_types == [2]  # VNC authentication only

    def health():
        container.reload()
        return container.attrs["State"]["Health"]["Status"] == "healthy"
    # The health check itself completes the banner exchange (interval 10 s).
    wait_for("a healthy status", health, timeout=40, every=0.5)


def test_vnc_login_needs_the_password_and_shows_the_environment_name(desktop):
    _, ip = desktop
    with login(ip, FIRST) as client:
        assert client.name == TITLE
        assert (client.width, client.height) == (1280, 800)
    with pytest.raises(AuthFailed):
        login(ip, "wrong-pw")


def test_new_password_replaces_the_old_one_and_open_connections_stay(desktop, docker_client):
    container, ip = desktop
    first = wait_for("a login with the current password", lambda: login(ip, FIRST))
    try:
        first.full_frame()
        code, output = set_password(docker_client, container, "N3w-once", user=f"{UID}:{GID}")
        assert code == 0, output
        with pytest.raises(AuthFailed):
            login(ip, FIRST)
        with login(ip, "N3w-once") as second:
            assert second.full_frame().width == 1280
        # The connection opened with the old password still gets whole frames.
        frame = first.full_frame()
        assert (frame.width, frame.height) == (1280, 800)
    finally:
        first.close()
    # Run as root (the engine's default for exec) it works too, and the file stays the researcher's.
    code, output = set_password(docker_client, container, FIRST)
    assert code == 0, output
    stat = container.exec_run(["stat", "-c", "%u:%g %a", "/home/alice/.vnc/passwd"]).output.decode().strip()
    assert stat == f"{UID}:{GID} 600"
    login(ip, FIRST).close()


def test_set_password_refuses_an_empty_password_and_keeps_the_old(desktop, docker_client):
    container, ip = desktop
    code, output = set_password(docker_client, container, "", user=f"{UID}:{GID}")
    assert code == 64 and "non-empty" in output
    login(ip, FIRST).close()


def test_framebuffer_is_a_drawn_desktop(desktop):
    _, ip = desktop
    with login(ip, FIRST) as client:
        # XFCE draws its wallpaper, panel and icons a second or two after Xvnc starts.
        frame = wait_for("a drawn desktop", lambda: (lambda f: f if f.colours() > 16 else None)(client.full_frame()),
                         timeout=60, every=0.5)
        assert len(frame.pixels) == 1280 * 800 * 4


def test_xvnc_and_the_desktop_run_as_the_researcher_and_nothing_as_root(desktop):
    container, _ = desktop

    def processes():
        rows = container.top(ps_args="-eo pid,ruid,euid,suid,rgid,egid,args")["Processes"]
        names = " ".join(r[6] for r in rows)
        return rows if "Xvnc" in names and "xfdesktop" in names and "xfce4-panel" in names else None
    rows = wait_for("the whole session to start", processes, timeout=60, every=0.5)
    xvnc = [r for r in rows if r[6].startswith("Xvnc :1")]
    assert xvnc and xvnc[0][1:6] == [str(UID)] * 3 + [str(GID)] * 2
    for _pid, ruid, euid, suid, rgid, egid, args in rows:
        if "asci-vnc-health" in args:
            continue  # the engine's health probe: started by docker as root, it drops to nobody at once
        assert (ruid, euid, suid) == (str(UID),) * 3, args
        assert (rgid, egid) == (str(GID),) * 2, args


def test_docker_stop_takes_under_two_seconds(base, docker_client, unique):
    container = run_desktop(docker_client, base.ref, unique("stop"), ASCI_USER="bob", ASCI_UID="5001")
    try:
        ip = address(container)
        wait_for("the RFB banner", lambda: RfbClient(ip).banner(), timeout=30)
        started = time.monotonic()
        container.stop(timeout=10)
        took = time.monotonic() - started
        assert took < 2.0, f"docker stop took {took:.2f} s"
        container.reload()
        assert container.status == "exited"
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("env, expected", [
    ({"ASCI_UID": "5001"}, "ASCI_USER is not set"),
    ({"ASCI_USER": "carol", "ASCI_UID": "0"}, "ASCI_UID must not be 0"),
    ({"ASCI_USER": "carol", "ASCI_UID": "50x1"}, "ASCI_UID must be a number"),
    ({"ASCI_USER": "Robert'); rm", "ASCI_UID": "5001"}, "is not a valid user name"),
], ids=["missing-user", "uid-0", "uid-not-numeric", "bad-name"])
def test_bad_environment_exits_at_once_with_one_clear_line(base, docker_client, unique, env, expected):
    started = time.monotonic()
    container = run_desktop(docker_client, base.ref, unique("badenv"), **env)
    try:
        status = container.wait(timeout=20)
        took = time.monotonic() - started
        assert status["StatusCode"] == 64
        assert took < 10, f"took {took:.1f} s to give up"
        lines = [line for line in container.logs().decode().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert lines[0].startswith("asci-session: ") and expected in lines[0]
    finally:
        container.remove(force=True)
