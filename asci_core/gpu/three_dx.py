"""The development 3DX: one `Xvfb +extension GLX` per node that VirtualGL renders on, and per-session access.

On a GPU node the site's Xorg on the GPU is the 3DX; here Mesa's llvmpipe stands in, so the wiring
(socket, cookie, VirtualGL's read-back into the session's Xvnc) is proven without a GPU. The server is
started with `-auth`: only holders of its cookie may connect. A session gets the socket file alone
(never the whole /tmp/.X11-unix, which would expose every X server of the node) and its own
copy of the cookie, readable by the session's uid only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asci_core.gpu import xauth
# The launcher's own mount type: a grant's mounts go into a session's mounts as they are.
from asci_core.launcher.session_spec import BindMount
from asci_core.gpu.x11_probe import x_connection
from asci_core.stack.part import Part, Probe, Started, StartError

X11_SOCKETS = Path("/tmp/.X11-unix")
# Where a session's container finds its cookie copy; XAUTHORITY points here.
SESSION_COOKIE_TARGET = "/run/asci-3dx/xauthority"


def socket_path(display: int) -> Path:
    return X11_SOCKETS / f"X{display}"


def server_cookie_path(state_dir: Path) -> Path:
    return state_dir / "gpu" / "three-dx.xauth"


def session_cookie_path(state_dir: Path, session: str) -> Path:
    return state_dir / "gpu" / "sessions" / f"{session}.xauth"


def xvfb_argv(binary: Path, display: int, screen: str, cookie_file: Path) -> list[str]:
    return [str(binary), f":{display}", "-screen", "0", screen, "+extension", "GLX",
            "-auth", str(cookie_file), "-nolisten", "tcp", "-noreset"]


class ThreeDxPart(Part):
    name = "three_dx"
    order = 60  # after the engine and base image: nothing depends on it to start

    @property
    def settings(self):
        return self.config.gpu.three_dx

    @property
    def managed(self) -> bool:
        return self.settings.enabled

    @property
    def address(self) -> str:
        return f"unix://{socket_path(self.settings.display)}"

    @property
    def start_timeout(self) -> float:
        return self.settings.start_timeout

    @property
    def cookie_file(self) -> Path:
        return server_cookie_path(self.state_dir)

    def probe(self) -> Probe:
        sock = socket_path(self.settings.display)
        if not sock.exists():
            return Probe(False, detail=f"no socket {sock}")
        try:
            cookie = xauth.cookie_of(self.cookie_file, self.settings.display)
        except (OSError, xauth.XauthError):
            return Probe(False, detail=f"no readable cookie at {self.cookie_file}")
        accepted, why = x_connection(sock, cookie)
        return Probe(accepted, version="Xvfb +GLX" if accepted else "", detail=why)

    def start(self) -> Started:
        display, binary = self.settings.display, self.settings.binary
        if not binary.exists():
            raise StartError(f"{binary} not found (Debian package xvfb)")
        if socket_path(display).exists() or Path(f"/tmp/.X{display}-lock").exists():
            raise StartError(f"display :{display} is taken by another X server: set gpu.three_dx.display")
        # A new cookie on every start: a copy handed out for an earlier server opens nothing.
        xauth.write_private(self.cookie_file, [xauth.wild_entry(display, xauth.new_cookie())])
        return self.launch(xvfb_argv(binary, display, self.settings.screen, self.cookie_file),
                           files=[str(self.cookie_file)])


@dataclass(frozen=True)
class SessionGpuAccess:
    """What a session's container gets to use the node's 3DX: exactly two files, and where they are."""

    mounts: list[BindMount]
    environment: dict[str, str] = field(default_factory=dict)
    cookie_file: Path | None = None  # the per-session copy on the node, removed when the session ends

    def docker_volumes(self) -> dict[str, dict[str, str]]:
        """The docker SDK's `volumes=` form."""
        return {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in self.mounts}


def grant_session(server_cookie: Path, display: int, state_dir: Path, session: str, uid: int,
                  gid: int | None = None, socket: Path | None = None) -> SessionGpuAccess:
    """Write SESSION's copy of the 3DX cookie (FamilyWild, 0600, owned by UID) and say what to mount.

    SOCKET: where the 3DX's socket is on the node when not /tmp/.X11-unix/X<display>; the session
    sees it there all the same, since that is where X clients look for display :<display>.

    The copy is a file of its own so that ending one session revokes nothing of another's, and so the
    server's own file is never mounted anywhere.
    """
    if not session or "/" in session or session.startswith("."):
        raise ValueError(f"not a session name: {session!r}")
    if uid <= 0:
        raise ValueError("a session's cookie is never given to root")
    cookie = xauth.cookie_of(server_cookie, display)
    copy = session_cookie_path(state_dir, session)
    xauth.write_private(copy, [xauth.wild_entry(display, cookie)], uid=uid, gid=gid)
    sock = str(socket_path(display))
    return SessionGpuAccess(
        mounts=[BindMount(str(socket or sock), sock, True), BindMount(str(copy), SESSION_COOKIE_TARGET, True)],
        environment={"XAUTHORITY": SESSION_COOKIE_TARGET, "ASCI_VGL_DISPLAY": f":{display}"},
        cookie_file=copy,
    )


def revoke_session(state_dir: Path, session: str) -> None:
    session_cookie_path(state_dir, session).unlink(missing_ok=True)
