"""OpenGL back ends of sessions: what a node offers, and what a session of a GL environment is given.

glx: the node's 3DX server. The session gets the 3DX's socket alone (a path on the node, mounted by
the node's engine) and its own copy of the cookie, with ASCI_VGL_DISPLAY and XAUTHORITY for the
image's `asci-gl-run`. On a node whose engine runs on the launcher's host (unix://) the launcher
reads the 3DX's cookie file and writes the copy beside its database (asci_core.gpu.three_dx.
grant_session), and the engine mounts it. On a remote node (tcp://) nothing of the launcher's host
is mounted: the cookie is read on the node through its engine (node_files.peek, a container that
never runs), and the copy is put into the session's container between create and start
(put_archive), owned by the session's uid, mode 0600.

egl: one render device of the node (`/dev/dri/renderD*` or `/dev/nvidiaN`, never all of them), shared
with other egl sessions unless the environment asks for exclusive use; NVIDIA's control devices go
along with an NVIDIA device. A node offering egl without devices stands for a driver's own device
(Mesa's software EGL device in development): the session gets ASCI_VGL_DISPLAY=egl and nothing else.
A device only its group may open adds that group to the session (`device_groups`).

Nothing here runs for a session whose environment has `opengl: none`.
"""
from __future__ import annotations

import io
import os
import re
import stat
import tarfile
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
    """What the session's container gets on top of its usual arguments.

    `on_node`: what can only be done with the node's engine at hand (a remote node's files): run by
    the session's start between create and start (NodeSteps), or None when everything is known here."""

    mounts: list = field(default_factory=list)  # session_spec.BindMount
    environment: dict[str, str] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)  # docker's "HOST:CONTAINER:rwm"
    groups: list[tuple[str, int]] = field(default_factory=list)  # (name, gid) the devices need
    on_node: "NodeSteps | None" = None

    @property
    def group_add(self) -> list[str]:
        return [str(gid) for _, gid in self.groups]


def is_local(node: Any) -> bool:
    """The node's engine runs on the launcher's host: its files are the launcher's files."""
    return node.url.startswith("unix://")


def cookie_dir(state_dir: Path) -> Path:
    from asci_core.gpu.three_dx import session_cookie_path

    return session_cookie_path(state_dir, "x").parent


def grant(choice: GlChoice, node: Any, session: str, uid: int, gid: int, state_dir: Path) -> GlAccess:
    """The wiring of CHOICE on NODE (its NodeSettings) for SESSION's container."""
    if choice.backend == "glx":
        return _grant_glx(node, session, uid, gid, state_dir)
    devices = list(choice.devices) + list(companions(node.render_devices or (), choice.devices))
    first = choice.devices[0] if choice.devices else None
    vgl = device_target(first) if first and RENDER_NODE.fullmatch(Path(first).name) else "egl"
    access = GlAccess(environment={"ASCI_VGL_DISPLAY": vgl}, devices=[f"{d}:{device_target(d)}:rwm" for d in devices])
    if is_local(node):
        access.groups = device_groups(_local_owner(d) for d in devices)
    elif devices:
        access.on_node = NodeSteps(node.name, devices=tuple(devices))
    return access


def _grant_glx(node: Any, session: str, uid: int, gid: int, state_dir: Path) -> GlAccess:
    from asci_core.gpu.three_dx import SESSION_COOKIE_TARGET, grant_session, socket_path
    from asci_core.gpu.xauth import XauthError

    if uid <= 0:
        raise ValueError("a session's cookie is never given to root")
    number, sock = three_dx_socket(node.three_dx_display)
    if is_local(node):
        try:
            given = grant_session(node.three_dx_cookie, number, state_dir, session, uid=uid, gid=gid, socket=sock)
        except (OSError, XauthError) as exc:
            raise GlUnavailable(f"the 3DX cookie of node {node.name} is unusable "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
        return GlAccess(mounts=list(given.mounts), environment=dict(given.environment))
    from .session_spec import BindMount

    # The socket is a path on the node: its engine resolves the bind mount. The cookie is not.
    return GlAccess(mounts=[BindMount(str(sock), str(socket_path(number)), True)],
                    environment={"XAUTHORITY": SESSION_COOKIE_TARGET, "ASCI_VGL_DISPLAY": f":{number}"},
                    on_node=NodeSteps(node.name, cookie=str(node.three_dx_cookie), display=number, uid=uid, gid=gid))


# --- device groups -------------------------------------------------------------


def device_groups(owners: Iterable[tuple[int, int] | None]) -> list[tuple[str, int]]:
    """(name, gid) of the groups a session needs to open its devices: for each device, given as
    (gid, mode), its group unless anybody may read and write it (udev makes render nodes 0666,
    NVIDIA's driver its devices too; a site may restrict them to a group such as `render`).

    The name is gpu<gid>, never the node's name for it: an image may have a group of that name
    (`render`, `video`) under another gid, and only the gid opens the device."""
    gids = set()
    for owner in owners:
        if owner is None:
            continue
        gid, mode = owner
        if mode & (stat.S_IROTH | stat.S_IWOTH) != (stat.S_IROTH | stat.S_IWOTH):
            gids.add(gid)
    return [(f"gpu{gid}", gid) for gid in sorted(gids)]


def _local_owner(device: str) -> tuple[int, int] | None:
    try:
        info = os.stat(device)
    except OSError:
        return None
    return info.st_gid, stat.S_IMODE(info.st_mode)


def with_groups(kwargs: dict[str, Any], groups: Iterable[tuple[str, int]], account: str) -> dict[str, Any]:
    """KWARGS with GROUPS given to the session: group_add for `account: engine`; for `account: image`
    (whose entry point rebuilds the groups from its own /etc/group, dropping group_add) the pairs
    joined to ASCI_GROUPS ("name:gid,..."), after the directory's own groups."""
    groups = list(groups)
    if not groups:
        return kwargs
    # Kept for account: image too: `docker exec` into the session is given them.
    kwargs["group_add"] = sorted({*(kwargs.get("group_add") or []), *(str(gid) for _, gid in groups)})
    if account != "image":
        return kwargs
    from .directory import MAX_ID, MIN_ID

    for name, gid in groups:
        if not MIN_ID <= gid <= MAX_ID:
            # The entry point would end the session (it creates no group below MIN_ID: those are the
            # image's own); refused here in one line, before anything starts.
            raise GlUnavailable(f"the render device's group (gid {gid}) cannot be given to an `account: image` "
                                f"desktop, whose groups are {MIN_ID}..{MAX_ID}: make the device 0666 on the node "
                                f"or use account: engine")
    environment = dict(kwargs.get("environment") or {})
    pairs = [p for p in (environment.get("ASCI_GROUPS") or "").split(",") if p]
    named = {p.partition(":")[0] for p in pairs}
    numbered = {p.partition(":")[2] for p in pairs}
    pairs += [f"{name}:{gid}" for name, gid in groups if name not in named and str(gid) not in numbered]
    environment["ASCI_GROUPS"] = ",".join(pairs)
    kwargs["environment"] = environment
    return kwargs


# --- what is done on a remote node ----------------------------------------------------


def cookie_archive(display: int, cookie: bytes, uid: int, gid: int) -> bytes:
    """A tar for put_archive at "/": the session's cookie copy where XAUTHORITY points, in a folder
    of its own, both owned by UID:GID and closed to everybody else."""
    from asci_core.gpu import xauth
    from asci_core.gpu.three_dx import SESSION_COOKIE_TARGET

    data = xauth.encode([xauth.wild_entry(display, cookie)])
    target = SESSION_COOKIE_TARGET.lstrip("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, mode, size in ((str(Path(target).parent), tarfile.DIRTYPE, 0o700, 0),
                                       (target, tarfile.REGTYPE, 0o600, len(data))):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.size = kind, mode, uid, gid, size
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


@dataclass(frozen=True)
class NodeSteps:
    """The part of a session's wiring done with the node's engine: reading the node's 3DX cookie
    or its devices' owners (node_files.peek, from the session's image), and putting the cookie copy
    into the created container before it starts."""

    node: str
    cookie: str | None = None  # the 3DX's cookie file on the node
    display: int = 0
    uid: int = 0
    gid: int = 0
    devices: tuple[str, ...] = ()

    def before_create(self, client: Any, kwargs: dict[str, Any], account: str) -> dict[str, Any]:
        if not self.devices:
            return kwargs
        from .node_files import NodeFileError, peek

        owners = []
        for device in self.devices:
            try:
                found = peek(client, kwargs["image"], device)
            except NodeFileError as exc:
                raise GlUnavailable(f"render device {device} of node {self.node} is unusable ({exc})") from None
            owners.append((found.gid, found.mode) if found.kind == "char" else None)
        return with_groups(dict(kwargs), device_groups(owners), account)

    def before_start(self, client: Any, container: Any, image: str) -> None:
        if self.cookie is None:
            return
        from asci_core.gpu import xauth
        from .node_files import NodeFileError, peek

        try:
            found = peek(client, image, self.cookie)
            if found.kind != "file":
                raise NodeFileError("not a regular file")
            secret = _cookie_in(xauth.decode(found.data), self.display)
        except (NodeFileError, xauth.XauthError) as exc:
            raise GlUnavailable(f"the 3DX cookie of node {self.node} is unusable ({exc})") from None
        if not container.put_archive("/", cookie_archive(self.display, secret, self.uid, self.gid)):
            raise GlUnavailable(f"node {self.node} did not take the session's 3DX cookie")


def _cookie_in(entries: list, display: int) -> bytes:
    from asci_core.gpu import xauth

    number = str(display).encode()
    for entry in entries:
        if entry.name == xauth.MIT_MAGIC_COOKIE and entry.number == number:
            return entry.data
    raise xauth.XauthError(f"it holds no cookie for display :{display}")


def apply(kwargs: dict[str, Any], access: GlAccess, account: str = "engine") -> dict[str, Any]:
    """Container-create KWARGS with ACCESS added (ACCOUNT: the environment's, for the groups)."""
    import docker.types

    kwargs["mounts"] = [*(kwargs.get("mounts") or []),
                        *(docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only)
                          for m in access.mounts)]
    kwargs["environment"] = {**(kwargs.get("environment") or {}), **access.environment}
    if access.devices:
        kwargs["devices"] = [*(kwargs.get("devices") or []), *access.devices]
    return with_groups(kwargs, access.groups, account)


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
