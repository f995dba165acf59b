"""How a session container is created: limits, identity, isolation, mounts, labels.

Isolation: every node has one bridge network for sessions (`session_network`,
default asci-sessions) created with inter-container traffic disabled
(com.docker.network.bridge.enable_icc=false). The host — where the proxy runs —
reaches each session's VNC port; sessions cannot reach each other on that
bridge. One shared network rather than one per session because Docker's default
address pools hold about 30 bridge networks per engine, fewer than the sessions
a node runs; `network_mode: none` would leave the proxy no way in. A network that
exists under that name with inter-container traffic allowed is refused.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Mapping

import docker.errors
import docker.types

from asci_logging.container_logging import log_config

from .directory import Researcher
from .errors import StartFailed
from .inventory import COMPONENT, Reservation, scope_labels
from .mount_templates import Substitution, render
from .settings import IMAGE_ACCOUNT_CAPABILITIES, EnvironmentSettings

ICC_OPTION = "com.docker.network.bridge.enable_icc"
# The most groups the desktop images' entry point takes (ASCI_GROUPS).
MAX_IMAGE_GROUPS = 256
NETWORK_LABELS = {"asci.component": "launcher"}


def container_name(session_id: str) -> str:
    return f"asci-session-{session_id}"


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    read_only: bool


def render_mounts(env: EnvironmentSettings, user: Researcher) -> list[BindMount]:
    """The environment's mounts for USER; MountTemplateError when one leaves its root."""
    values = Substitution(user.name, user.uid, user.gid)
    return [BindMount(render(m.source, values), render(m.target, values), m.read_only) for m in env.mounts]


def ensure_session_network(client: Any, name: str) -> None:
    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        try:
            client.networks.create(name, driver="bridge", options={ICC_OPTION: "false"},
                                   labels=NETWORK_LABELS, check_duplicate=True)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # another launcher created it meanwhile
                raise
        return
    if (network.attrs.get("Options") or {}).get(ICC_OPTION) != "false":
        raise StartFailed(f"network {name} exists but lets containers reach each other; "
                          f"remove it or set launcher.session_network to another name")


def home_of(user: Researcher) -> str:
    return f"/home/{user.name}"


def first_password_file(user: Researcher) -> str:
    """Written by the desktop images' entry point as the last step before it drops root."""
    return f"{home_of(user)}/.vnc/passwd"


def identity_kwargs(env: EnvironmentSettings, user: Researcher) -> dict[str, Any]:
    """Who the session runs as. `account: engine`: the engine starts it as uid:gid, nothing ever
    runs as root. `account: image` (the desktop images): the entry point is root for the moment it
    creates the account, with only IMAGE_ACCOUNT_CAPABILITIES, then replaces itself (PID 1) with
    the session as the user with an empty bounding set; so no engine init (it would stay root as
    PID 1), and `docker exec` into the session is done as the user too."""
    env_vars = {"ASCI_USER": user.name, "ASCI_UID": str(user.uid), "ASCI_GID": str(user.gid),
                "ASCI_HOME": home_of(user), "ASCI_ENVIRONMENT_TITLE": env.display_title}
    if env.account == "image":
        caps = sorted(set(IMAGE_ACCOUNT_CAPABILITIES) | set(env.capabilities))
        # The first one-time password arrives on the entry point's stdin (see start_with_first_password).
        env_vars["ASCI_VNC_PASSWORD_FILE"] = "/dev/stdin"
        if user.numbered_groups:
            # The entry point creates them and makes the user a member: setpriv --init-groups then
            # gives them to every session process (group_add would be dropped by that very step).
            env_vars["ASCI_GROUPS"] = groups_variable(user)
        # stdin_open without detach is how the SDK asks for StdinOnce (closed after the first attach).
        return dict(user=None, init=False, cap_add=caps, environment=env_vars, stdin_open=True, detach=False)
    # group_add holds only here: the image's entry point rebuilds the groups from its own /etc/group
    # (filled from ASCI_GROUPS above).
    return dict(user=f"{user.uid}:{user.gid}", init=True, cap_add=list(env.capabilities) or None,
                environment=env_vars, group_add=[str(g) for g in user.group_ids] or None)


def identity_problem(env: EnvironmentSettings, user: Researcher) -> str | None:
    """Why ENV's image could not take USER's identity, found before anything starts; None when it can."""
    if env.account != "image":
        return None
    groups = image_groups(user)
    if len(groups) > MAX_IMAGE_GROUPS:
        return f"the desktop images take at most {MAX_IMAGE_GROUPS} groups (ASCI_GROUPS), the directory gives {len(groups)}"
    gids: dict[str, int] = {}
    for name, gid in groups:
        if gids.setdefault(name, gid) != gid:
            return f"the directory gives group {name!r} two gids ({gids[name]} and {gid})"
    return None


def image_groups(user: Researcher) -> list[tuple[str, int]]:
    """USER's (name, gid) pairs with one name per gid (the first in order): a gid is what grants
    access, and the entry point refuses one gid under two names."""
    named: dict[int, str] = {}
    for name, gid in sorted(user.numbered_groups):
        named.setdefault(gid, name)
    return sorted((name, gid) for gid, name in named.items())


def groups_variable(user: Researcher) -> str:
    """ASCI_GROUPS for the desktop images' entry point: "name:gid,name:gid"."""
    return ",".join(f"{name}:{gid}" for name, gid in image_groups(user))


def create_kwargs(env: EnvironmentSettings, user: Researcher, reservation: Reservation, mounts: list[BindMount],
                  network: str, scope: Mapping[str, str], image: str | None = None) -> dict[str, Any]:
    name = container_name(reservation.session)
    identity = identity_kwargs(env, user)
    logging = log_config(COMPONENT, name, user=user.name, environment=env.name)
    labels = {**scope_labels(scope), **reservation.labels(), **logging.labels}
    kwargs: dict[str, Any] = dict(
        image=image or env.image, command=list(env.command) or None, name=name,
        hostname=f"asci-{reservation.session[:12]}", labels=labels, log_config=logging.log_config,
        user=identity["user"], group_add=identity.get("group_add"),
        environment={**env.env, **identity["environment"], "USER": user.name, "LOGNAME": user.name,
                     "ASCI_SESSION": reservation.session},
        nano_cpus=int(round(reservation.cpus * 1e9)), mem_limit=reservation.memory,
        memswap_limit=reservation.memory,  # no swap on top of the limit: the reservation is the ceiling
        pids_limit=env.pids_limit, shm_size=env.shm_bytes,
        security_opt=["no-new-privileges"], cap_drop=["ALL"], cap_add=identity["cap_add"],
        init=identity["init"], network=network,
        stdin_open=identity.get("stdin_open", False), detach=identity.get("detach", True),
        mounts=[docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in mounts],
    )
    if reservation.gpu_ids:
        if all(i.isdigit() for i in reservation.gpu_ids):
            kwargs["device_requests"] = [docker.types.DeviceRequest(
                driver="nvidia", device_ids=list(reservation.gpu_ids), capabilities=[["gpu"]])]
        else:
            kwargs["devices"] = [f"/dev/dri/{i}:/dev/dri/{i}:rwm" for i in reservation.gpu_ids]
    return kwargs


def start_with_first_password(client: Any, container: Any, password: str, timeout: float) -> None:
    """Start CONTAINER (account: image) and hand its entry point the first one-time password on
    stdin: never an argument, a variable, a file or a log line, and no `docker exec` on the way to
    the first login. stdin_once: when we close, the entry point reads end of input."""
    stream = client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
    raw = getattr(stream, "_sock", stream)
    try:
        raw.settimeout(timeout)
        container.start()
        raw.sendall(password.encode() + b"\n")
        raw.shutdown(socket.SHUT_WR)  # end of input for the entry point
    finally:
        stream.close()  # the wrapper holds the socket open too
        raw.close()
