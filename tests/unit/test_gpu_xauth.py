"""X authority files: the Xau format, private writes, and a session's cookie copy with its mounts."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from asci_core.gpu import xauth
from asci_core.gpu.three_dx import SESSION_COOKIE_TARGET, grant_session, revoke_session, session_cookie_path, xvfb_argv
from asci_core.gpu.x11_probe import setup_request


def test_entries_round_trip_and_truncated_data_is_refused():
    entries = [xauth.wild_entry(55, b"\x01" * 16),
               xauth.XauthEntry(256, b"node1", b"0", xauth.MIT_MAGIC_COOKIE, b"\x02" * 16)]
    data = xauth.encode(entries)
    assert xauth.decode(data) == entries
    with pytest.raises(xauth.XauthError, match="ends inside an entry"):
        xauth.decode(data[:-3])


def test_the_xauth_program_reads_our_wild_entry(tmp_path):
    path = tmp_path / "cookie"
    xauth.write_private(path, [xauth.wild_entry(55, bytes(range(16)))])
    listed = subprocess.run(["xauth", "-f", str(path), "nlist"], capture_output=True, text=True, check=True).stdout
    # nlist: family (hex), address length, address, number length, number, name length, name, data.
    assert listed.split() == ["ffff", "0000", "0002", "3535", "0012", xauth.MIT_MAGIC_COOKIE.hex(),
                              "0010", bytes(range(16)).hex()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_session_gets_the_socket_and_its_own_cookie_copy_only(tmp_path):
    server = tmp_path / "gpu" / "three-dx.xauth"
    xauth.write_private(server, [xauth.wild_entry(55, b"s" * 16)])
    access = grant_session(server, 55, tmp_path, "alice-1", uid=4321, gid=4322)
    copy = session_cookie_path(tmp_path, "alice-1")
    info = copy.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, 4321, 4322)
    assert xauth.decode(copy.read_bytes()) == [xauth.wild_entry(55, b"s" * 16)]
    assert access.docker_volumes() == {
        "/tmp/.X11-unix/X55": {"bind": "/tmp/.X11-unix/X55", "mode": "ro"},
        str(copy): {"bind": SESSION_COOKIE_TARGET, "mode": "ro"},
    }
    assert access.environment == {"XAUTHORITY": SESSION_COOKIE_TARGET, "ASCI_VGL_DISPLAY": ":55"}
    # Never the folder of sockets, never the server's own file.
    assert all(m.source not in ("/tmp/.X11-unix", str(server)) for m in access.mounts)
    revoke_session(tmp_path, "alice-1")
    assert not copy.exists() and server.exists()


@pytest.mark.parametrize("session, uid, why", [("../x", 1000, "not a session name"), ("", 1000, "not a session"),
                                                ("ok", 0, "never given to root")])
def test_bad_sessions_are_refused(tmp_path, session, uid, why):
    server = tmp_path / "three-dx.xauth"
    xauth.write_private(server, [xauth.wild_entry(55, b"s" * 16)])
    with pytest.raises(ValueError, match=why):
        grant_session(server, 55, tmp_path, session, uid=uid)


def test_a_missing_display_cookie_is_an_error(tmp_path):
    server = tmp_path / "three-dx.xauth"
    xauth.write_private(server, [xauth.wild_entry(56, b"s" * 16)])
    with pytest.raises(xauth.XauthError, match="no cookie for display :55"):
        xauth.cookie_of(server, 55)


def test_the_server_line_and_the_setup_request():
    assert xvfb_argv(os.path.normpath("/usr/bin/Xvfb"), 55, "1280x1024x24", "/s/c") == [
        "/usr/bin/Xvfb", ":55", "-screen", "0", "1280x1024x24", "+extension", "GLX", "-auth", "/s/c",
        "-nolisten", "tcp", "-noreset"]
    request = setup_request(b"k" * 16)
    assert request[:12] == b"l\0\x0b\0\0\0\x12\0\x10\0\0\0" and len(request) % 4 == 0
    assert setup_request(None) == b"l\0\x0b\0\0\0\0\0\0\0\0\0"


def test_the_3dx_is_a_stack_part_only_when_enabled():
    from asci_core.config import parse_config
    from asci_core.stack.manager import default_parts

    assert "three_dx" not in [p.name for p in default_parts(parse_config(""))]
    enabled = parse_config("gpu:\n  three_dx:\n    enabled: true\n    display: 77\n")
    part = next(p for p in default_parts(enabled) if p.name == "three_dx")
    assert part.managed and part.address == "unix:///tmp/.X11-unix/X77"
    assert part.cookie_file == enabled.stack.state_dir / "gpu" / "three-dx.xauth"
