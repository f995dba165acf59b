"""OpenGL back ends of sessions: what a node offers, and what a session of a GL environment is given.

glx: the node's 3DX server. The session gets the 3DX's socket alone and its own copy of the cookie
(asci_core.gpu.three_dx.grant_session), with ASCI_VGL_DISPLAY and XAUTHORITY for the image's
`asci-gl-run`. The copy is written by the launcher and bind-mounted by the node's engine, so glx is
offered by nodes whose engine runs on the launcher's host (a unix:// socket).

egl: one render device of the node (`/dev/dri/renderD*` or `/dev/nvidiaN`, never all of them), shared
with other egl sessions unless the environment asks for exclusive use; NVIDIA's control devices go
along with an NVIDIA device. A node offering egl without devices stands for a driver's own device
(Mesa's software EGL device in development): the session gets ASCI_VGL_DISPLAY=egl and nothing else.

Nothing here runs for a session whose environment has `opengl: none`.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from asci_core.errors import AsciError

BACKENDS = ("glx", "egl")
DISPLAY = re.compile(r":(\d{1,3})")
SOCKET = re.compile(r"/\S*/X(\d{1,3})")
RENDER_NODE = re.compile(r"renderD\d+")
NVIDIA_GPU = re.compile(r"nvidia\d+")
# Devices every NVIDIA client needs besides its GPU: shared, never reserved.
NVIDIA_SHARED = re.compile(r"nvidia(ctl|-uvm|-uvm-tools|-modeset)")
DRI = Path("/dev/dri")


class GlUnavailable(AsciError):
    """The node's back end cannot be handed to a session now (e.g. its 3DX cookie is unreadable)."""


def three_dx_socket(display: str) -> tuple[int, Path]:
    """(display number, socket on the node) of a 3DX display setting: ":0" or "/tmp/.X11-unix/X0"."""
    match = DISPLAY.fullmatch(display)
    if match:
        number = int(match.group(1))
        return number, Path(f"/tmp/.X11-unix/X{number}")
    match = SOCKET.fullmatch(display)
    if match:
        return int(match.group(1)), Path(display)
    raise ValueError(f"expected a display such as :0 or a socket such as /tmp/.X11-unix/X0, got {display!r}")


def device_target(path: str) -> str:
    """Where a node device appears in the session: render nodes under /dev/dri, NVIDIA's under /dev."""
    name = Path(path).name
    return f"/dev/dri/{name}" if RENDER_NODE.fullmatch(name) else f"/dev/{name}"


def assignable(devices: Iterable[str]) -> tuple[str, ...]:
    """The devices handed out one per session (GPUs), in the configured order."""
    return tuple(d for d in devices if RENDER_NODE.fullmatch(Path(d).name) or NVIDIA_GPU.fullmatch(Path(d).name))


def companions(devices: Iterable[str], given: Iterable[str]) -> tuple[str, ...]:
    """NVIDIA's control devices when an NVIDIA GPU is GIVEN; nothing for render nodes."""
    if not any(NVIDIA_GPU.fullmatch(Path(d).name) for d in given):
        return ()
    return tuple(d for d in devices if NVIDIA_SHARED.fullmatch(Path(d).name))


# --- configuration checks ---------------------------------------------------


def environment_gl_problems(opengl: str, exclusive: bool, backend: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if exclusive and opengl not in ("egl", "any"):
        found.append(("exclusive_gpus", "applies to render devices: set opengl to egl or any "
                                        "(a 3DX is shared by design)"))
    if opengl != "none" and backend == "swarm":
        found.append(("opengl", "the Swarm backend cannot hand a session a 3DX cookie or one render device; "
                                "use launcher.backend: engines for OpenGL environments"))
    return found


def node_gl_problems(url: str, backends: list[str] | None, display: str | None, cookie: Path | None,
                     devices: list[str] | None) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    offered = set(backends or ())
    if display is not None:
        try:
            three_dx_socket(display)
        except ValueError as exc:
            found.append(("three_dx_display", str(exc)))
    if "glx" in offered:
        if display is None or cookie is None:
            found.append(("gl_backends", "glx needs the node's 3DX: three_dx_display and three_dx_cookie"))
        if not url.startswith("unix://"):
            found.append(("gl_backends", "glx needs the node's engine on the launcher's host (unix://): the "
                                         "launcher writes each session's cookie copy and the engine mounts it"))
    elif display is not None or cookie is not None:
        found.append(("three_dx_display" if display is not None else "three_dx_cookie",
                      "a 3DX is used only when gl_backends lists glx"))
    for i, device in enumerate(devices or ()):
        name = Path(device).name
        if not device.startswith("/") or not (RENDER_NODE.fullmatch(name) or name.startswith("nvidia")):
            found.append((f"render_devices[{i}]", f"expected a device such as /dev/dri/renderD128 or "
                                                  f"/dev/nvidia0, got {device!r}"))
    if devices and "egl" not in offered:
        found.append(("render_devices", "render devices are given to sessions only when gl_backends lists egl"))
    return found


# --- the local node's defaults ----------------------------------------------


def local_defaults(node: Any, three_dx: Any, state_dir: Path, dri: Path = DRI) -> Any:
    """NODE (NodeSettings of an engine on this host) with its GL settings filled in where unset:
    glx from the development 3DX (`gpu.three_dx`) when enabled, egl when DRI has render nodes."""
    if node.gl_backends is not None or not node.url.startswith("unix://"):
        return node
    from asci_core.gpu.three_dx import server_cookie_path  # the gpu floor, only for its file layout

    backends: list[str] = []
    changes: dict[str, Any] = {}
    if three_dx is not None and three_dx.enabled:
        backends.append("glx")
        changes.update(three_dx_display=node.three_dx_display or f":{three_dx.display}",
                       three_dx_cookie=node.three_dx_cookie or server_cookie_path(state_dir))
    devices = node.render_devices
    if devices is None:
        try:
            devices = sorted(str(p) for p in dri.iterdir() if RENDER_NODE.fullmatch(p.name))
        except OSError:
            devices = []
    if devices:
        backends.append("egl")
        changes["render_devices"] = devices
    return replace(node, gl_backends=backends, **changes)


# --- what a session gets ------------------------------------------------------


@dataclass(frozen=True)
class GlChoice:
    """The back end placement chose for a session, and the render devices it holds (egl)."""

    backend: str  # "glx" or "egl"
    devices: tuple[str, ...] = ()
    exclusive: bool = False


@dataclass
class GlAccess:
    """What the session's container gets on top of its usual arguments."""

    mounts: list = field(default_factory=list)  # session_spec.BindMount
    environment: dict[str, str] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)  # docker's "HOST:CONTAINER:rwm"
    group_add: list[str] = field(default_factory=list)


def cookie_dir(state_dir: Path) -> Path:
    from asci_core.gpu.three_dx import session_cookie_path

    return session_cookie_path(state_dir, "x").parent


def grant(choice: GlChoice, node: Any, session: str, uid: int, gid: int, state_dir: Path) -> GlAccess:
    """The wiring of CHOICE on NODE (its NodeSettings) for SESSION's container."""
    if choice.backend == "glx":
        from asci_core.gpu.three_dx import grant_session
        from asci_core.gpu.xauth import XauthError

        number, sock = three_dx_socket(node.three_dx_display)
        try:
            given = grant_session(node.three_dx_cookie, number, state_dir, session, uid=uid, gid=gid, socket=sock)
        except (OSError, XauthError) as exc:
            raise GlUnavailable(f"the 3DX cookie of node {node.name} is unusable "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
        return GlAccess(mounts=list(given.mounts), environment=dict(given.environment))
    devices = list(choice.devices) + list(companions(node.render_devices or (), choice.devices))
    first = choice.devices[0] if choice.devices else None
    vgl = device_target(first) if first and RENDER_NODE.fullmatch(Path(first).name) else "egl"
    return GlAccess(environment={"ASCI_VGL_DISPLAY": vgl},
                    devices=[f"{d}:{device_target(d)}:rwm" for d in devices],
                    group_add=sorted({str(g) for g in map(_group_needed, devices) if g is not None}))


def _group_needed(device: str) -> int | None:
    """The device's group when only its group may open it (read on this host; a remote node's
    devices are usually 0666, as udev makes render nodes and NVIDIA's driver its devices)."""
    try:
        info = os.stat(device)
    except OSError:
        return None
    if info.st_mode & (stat.S_IROTH | stat.S_IWOTH) == (stat.S_IROTH | stat.S_IWOTH):
        return None
    return info.st_gid


def apply(kwargs: dict[str, Any], access: GlAccess) -> dict[str, Any]:
    """Container-create KWARGS with ACCESS added."""
    import docker.types

    kwargs["mounts"] = [*(kwargs.get("mounts") or []),
                        *(docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only)
                          for m in access.mounts)]
    kwargs["environment"] = {**(kwargs.get("environment") or {}), **access.environment}
    if access.devices:
        kwargs["devices"] = [*(kwargs.get("devices") or []), *access.devices]
    if access.group_add:
        kwargs["group_add"] = sorted({*(kwargs.get("group_add") or []), *access.group_add})
    return kwargs


def revoke(state_dir: Path, session: str) -> None:
    from asci_core.gpu.three_dx import revoke_session

    revoke_session(state_dir, session)


def sweep(state_dir: Path, keep: Callable[[], set[str]]) -> list[str]:
    """Remove the cookie copies of sessions not in KEEP() (ended while the launcher was away); their ids.

    KEEP is asked after the folder is listed: a copy is written only after its session's record, so
    every copy listed belongs to a session KEEP already knows unless that session has ended."""
    folder = cookie_dir(state_dir)
    try:
        files = list(folder.glob("*.xauth"))
    except OSError:
        return []
    if not files:
        return []
    active = keep()
    removed: list[str] = []
    for path in files:
        if path.stem not in active:
            path.unlink(missing_ok=True)
            removed.append(path.stem)
    return removed
