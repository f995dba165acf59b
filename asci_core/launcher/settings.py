"""The `launcher:` section: environments researchers can start, and the nodes that run them.

Single values are checked by the loader; what needs more than one value or a
parse (sizes, mount templates, image references, node addresses) is checked in
`LauncherSettings.problems()`, which the loader turns into one-line errors naming
the dotted key. Sizes are strings ("4g", "512m", "1073741824"): the loader takes
one type per setting.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from asci_core.config_base import Secret, setting

from .mount_templates import template_problem
from .opengl import environment_gl_problems, node_gl_problems
from .sizes import parse_size

NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
IMAGE_REFERENCE = re.compile(
    r"(?:(?:[a-zA-Z0-9.-]+(?::\d{1,5})?|\{registry\})/)?"
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?:(?::\w[\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?|@newest)")
# What the desktop images' entry point accepts as ASCI_ENVIRONMENT_TITLE.
DESKTOP_TITLE = re.compile(r"[A-Za-z0-9 ._,:;()+&/-]{1,80}")
# `{registry}/` at the start of an image stands for the facility registry's address.
REGISTRY_PLACEHOLDER = "{registry}"
# `REPOSITORY@newest`: the highest release tag (semantic version, no pre-release) in the registry at create time.
NEWEST = "@newest"
# What the ASCI desktop images' entry point needs while it is root, each one found missing by
# removing it: groupadd chowns its shadow files (CHOWN); the home is handed to the user, then
# chmod-ed (FOWNER) and entered as root before the drop, though 0700 and the user's
# (DAC_OVERRIDE); the drop itself (SETGID for setgroups/setgid, SETUID). Nothing else; all of
# them are gone from the bounding set once the entry point has become the user.
IMAGE_ACCOUNT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
# The node-pool entry of the Swarm manager (backend: swarm).
SWARM_MANAGER = "swarm-manager"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a desktop may get back after `cap_drop: ALL`. Capabilities that reach the host
# (SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_PTRACE, DAC_READ_SEARCH, ...) are never offered.
ALLOWED_CAPABILITIES = frozenset({"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
                                  "NET_BIND_SERVICE", "SYS_CHROOT", "AUDIT_WRITE", "SYS_NICE", "IPC_LOCK"})


@dataclass(frozen=True)
class MountSettings:
    source: str = setting(help="host path template; {user}, {uid}, {gid} are replaced, e.g. /data/{user}")
    target: str = setting(help="path inside the container, e.g. /home/{user}/data")
    read_only: bool = setting(True, help="mount read-only")


@dataclass(frozen=True)
class EnvironmentSettings:
    name: str = setting(help="short name used in the API and in labels, e.g. desktop-base", check="word")
    image: str = setting(help="image reference in the facility registry, e.g. registry.site:5000/desktops/base:1.4")
    title: str = setting("", help="what researchers see, default: the name")
    cpus: float = setting(1.0, help="CPUs reserved and enforced (nano_cpus)", check="positive")
    memory: str = setting("2g", help="memory limit and reservation, e.g. 4g or 512m")
    gpus: int = setting(0, help="GPUs reserved (whole devices)", check=("range", 0, 64))
    opengl: Literal["none", "glx", "egl", "any"] = setting(
        "none", help="OpenGL back end for VirtualGL: glx (the node's 3DX server), egl (a render device of the node), "
                     "any (glx where the node has a 3DX, else egl), none (no GPU access at all)")
    exclusive_gpus: bool = setting(False, help="egl: the session's render device is its own, shared with no other "
                                               "session (opengl egl or any; a 3DX is shared by design)")
    shm_size: str = setting("256m", help="size of /dev/shm")
    pids_limit: int = setting(4096, help="most processes in the session", check="positive")
    mounts: list[MountSettings] = setting(default_factory=list, help="data mounts per user")
    env: dict[str, str] = setting(default_factory=dict, help="environment variables of the session")
    command: list[str] = setting(default_factory=list, help="command instead of the image's own (empty: the image's)")
    capabilities: list[str] = setting(default_factory=list,
                                      help="capabilities added back after dropping all, e.g. [SETUID, SETGID]")
    account: Literal["engine", "image"] = setting(
        "engine", help="engine: the engine starts the session as the user's uid:gid; image: the image's entry "
                       "point starts as root with only CHOWN, DAC_OVERRIDE, FOWNER, SETGID, SETUID, creates the account from "
                       "ASCI_USER/ASCI_UID/ASCI_GID and drops to it for good (the ASCI desktop images)")
    ready_check: Literal["auto", "vnc", "running"] = setting(
        "auto", help="vnc: ready when the VNC port accepts a connection (create waits up to launcher.ready_timeout, "
                     "and a desktop that ends meanwhile fails with its last log line); running: as soon as the "
                     "container runs (images without VNC); auto: vnc for account image (the ASCI desktop images), "
                     "running otherwise")
    node_labels: dict[str, str] = setting(default_factory=dict,
                                          help="labels a node must carry to run this, e.g. {beamline: i03}")
    idle_timeout: float | None = setting(3600.0, help="seconds without a viewer before the session is stopped",
                                         check="positive")
    max_lifetime: float | None = setting(43200.0, help="seconds after which the session is stopped",
                                         check="positive")
    allowed_users: list[str] = setting(default_factory=list, help="users who may start it")
    allowed_groups: list[str] = setting(default_factory=list,
                                        help="groups whose members may start it (both lists empty: every known user)")

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)

    @property
    def waits_for_vnc(self) -> bool:
        return self.ready_check == "vnc" or (self.ready_check == "auto" and self.account == "image")

    @property
    def shm_bytes(self) -> int:
        return parse_size(self.shm_size)

    @property
    def follows_newest(self) -> bool:
        return self.image.endswith(NEWEST)

    def allows(self, user: str, groups: tuple[str, ...] | list[str]) -> bool:
        if not self.allowed_users and not self.allowed_groups:
            return True
        return user in self.allowed_users or any(g in self.allowed_groups for g in groups)


# What a newcomer on the embedded defaults can launch: `asci images build desktop-base --push` puts it there.
DEFAULT_ENVIRONMENT = EnvironmentSettings(
    name="desktop-base", title="Debian desktop", image=f"{REGISTRY_PLACEHOLDER}/bl/desktop-base:latest",
    cpus=2.0, memory="2g", shm_size="256m", account="image")


def with_registry(env: EnvironmentSettings, address: str) -> EnvironmentSettings:
    """ENV with `{registry}` replaced by ADDRESS."""
    if not env.image.startswith(REGISTRY_PLACEHOLDER + "/"):
        return env
    return replace(env, image=address + env.image[len(REGISTRY_PLACEHOLDER):])


@dataclass(frozen=True)
class NodeTLSSettings:
    ca_cert: Path = setting(help="CA certificate that signed the engine's certificate")
    client_cert: Path = setting(help="client certificate")
    client_key: Path = setting(help="client key")


@dataclass(frozen=True)
class NodeSettings:
    name: str = setting(help="node name used in placement and messages, e.g. node1", check="word")
    url: str = setting(help="Docker Engine address: unix:///var/run/docker.sock or tcp://host:2376")
    tls: NodeTLSSettings | None = setting(None, help="TLS files for a tcp:// engine (required unless loopback)")
    cpus: float | None = setting(None, help="CPUs sessions may reserve (default: what the engine reports)",
                                 check="positive")
    memory: str | None = setting(None, help="memory sessions may reserve, e.g. 64g (default: what the engine reports)")
    gpus: int | None = setting(None, help="GPUs (default: detected with nvidia-smi or /dev/dri on the local node)",
                               check=("range", 0, 64))
    labels: dict[str, str] = setting(default_factory=dict, help="labels environments can require, e.g. {gpu: a100}")
    gl_backends: list[Literal["glx", "egl"]] | None = setting(
        None, help="OpenGL back ends sessions can use here (default on the local node: glx when gpu.three_dx is "
                   "enabled, egl when /dev/dri has render nodes; elsewhere none)")
    three_dx_display: str | None = setting(None, help="glx: the node's 3DX display, e.g. :0, or its socket "
                                                      "/tmp/.X11-unix/X0")
    three_dx_cookie: Path | None = setting(None, help="glx: the 3DX's xauth file on the node (read by the launcher on "
                                                      "a unix:// node, through the node's engine on a tcp:// one); "
                                                      "each session gets its own copy of the cookie")
    render_devices: list[str] | None = setting(
        None, help="egl: devices a session may be given, e.g. [/dev/dri/renderD128, /dev/nvidia0, /dev/nvidiactl] "
                   "(default on the local node: /dev/dri/renderD*)")
    timeout: float | None = setting(None, help="seconds before this engine counts as not answering "
                                               "(default: launcher.engine_timeout)", check="positive")
    vnc_address: Literal["bridge", "published"] = setting(
        "bridge", help="how the proxy reaches sessions here: bridge: the container's address on the session network "
                       "(a proxy on this machine); published: VNC published on publish_address with an ephemeral "
                       "host port (a proxy on another machine)")
    publish_address: str | None = setting(None, help="the node's IP address that published VNC ports are bound to, "
                                                     "e.g. 10.0.0.12 (vnc_address: published)")

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_size(self.memory)


@dataclass(frozen=True)
class SwarmSettings:
    manager: str = setting(help="a Swarm manager's Docker Engine address: unix:///path/docker.sock or tcp://host:2376")
    tls: NodeTLSSettings | None = setting(None, help="TLS files for a tcp:// manager (required unless loopback)")
    timeout: float | None = setting(None, help="seconds before the manager counts as not answering "
                                               "(default: launcher.engine_timeout)", check="positive")
    start_timeout: float = setting(60.0, help="seconds a new session may take to be placed and running",
                                   check="positive")

    @property
    def url(self) -> str:  # read by the address check shared with nodes
        return self.manager


@dataclass(frozen=True)
class LauncherSettings:
    backend: Literal["engines", "swarm"] = setting(
        "engines", help="engines: ASCI drives each node's Docker engine and places sessions itself; "
                        "swarm: sessions are Swarm services, placed by Swarm after ASCI's admission")
    swarm: SwarmSettings | None = setting(None, help="the Swarm manager (backend: swarm); launcher.nodes then names "
                                                     "Swarm nodes by hostname: their capacity bounds admission and "
                                                     "connect reaches sessions through their engines")
    workdir: Path | None = setting(None, help="session database (default: STATE_DIR/launcher)")
    users_file: Path | None = setting(None, help="local users file, YAML or JSON (default: STATE_DIR/launcher/users.yaml)")
    placement: Literal["spread", "pack"] = setting(
        "spread", help="spread: the least-loaded node; pack: the fullest node that fits")
    max_sessions_per_user: int = setting(2, help="sessions one user may have at once", check="positive")
    cpu_overcommit: float = setting(1.0, help="CPUs reservable per node CPU", check=("range", 0.1, 16.0))
    memory_overcommit: float = setting(1.0, help="memory reservable per byte of node memory", check=("range", 0.1, 4.0))
    session_network: str = setting("asci-sessions", help="bridge network with inter-container traffic disabled",
                                   check="word")
    engine_timeout: float = setting(10.0, help="seconds before a node's engine counts as not answering",
                                    check="positive")
    usage_interval: float = setting(10.0, help="seconds between background samples of what each node's containers "
                                               "really use (0: place by reservations only)", check=("range", 0, 3600))
    ready_timeout: float = setting(20.0, help="seconds create waits for a new desktop's VNC port; past it the "
                                              "session answers `starting` and turns ready in the background",
                                   check="positive")
    stop_timeout: int = setting(10, help="seconds a session gets to exit before it is killed", check=("range", 0, 600))
    registry_username: str | None = setting(None, help="pull-only registry account for session images "
                                                       "(default: the registry's own credentials)")
    registry_password: Secret | None = setting(None, help="its password")
    environments: list[EnvironmentSettings] = setting(default_factory=lambda: [DEFAULT_ENVIRONMENT],
                                                      help="environments researchers can start "
                                                           "(default: desktop-base for everyone)")
    nodes: list[NodeSettings] = setting(default_factory=list,
                                        help="Docker engines that run sessions (default: the local engine)")

    def environment(self, name: str) -> EnvironmentSettings | None:
        return next((e for e in self.environments if e.name == name), None)

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, env in enumerate(self.environments):
            key = f"environments[{i}]"
            if env.name in seen:
                found.append((f"{key}.name", f"environment {env.name!r} is defined twice"))
            seen.add(env.name)
            if not IMAGE_REFERENCE.fullmatch(env.image):
                found.append((f"{key}.image", f"expected an image reference such as registry.site:5000/desktops/base:1.4 "
                                              f"or {{registry}}/bl/desktop-base@newest, got {env.image!r}"))
            for field in ("memory", "shm_size"):
                found.extend(_size_problem(f"{key}.{field}", getattr(env, field)))
            for j, mount in enumerate(env.mounts):
                for side in ("source", "target"):
                    problem = template_problem(getattr(mount, side))
                    if problem:
                        found.append((f"{key}.mounts[{j}].{side}", problem))
            targets = [m.target for m in env.mounts]
            for j, target in enumerate(targets):
                if targets.index(target) != j:
                    found.append((f"{key}.mounts[{j}].target", f"{target!r} is mounted twice"))
            for name in env.env:
                if not ENV_NAME.fullmatch(name):
                    found.append((f"{key}.env.{name}", "not a valid environment variable name"))
            if env.account == "image" and not DESKTOP_TITLE.fullmatch(env.display_title):
                found.append((f"{key}.title", "the desktop images show the title as the VNC desktop name: 1-80 "
                                              "letters, digits, spaces or ._,:;()+&/-"))
            for j, cap in enumerate(env.capabilities):
                if cap not in ALLOWED_CAPABILITIES:
                    found.append((f"{key}.capabilities[{j}]", f"{cap!r} is not allowed in a session "
                                                              f"(allowed: {', '.join(sorted(ALLOWED_CAPABILITIES))})"))
            for field in ("allowed_users", "allowed_groups"):
                for j, who in enumerate(getattr(env, field)):
                    if not NAME.fullmatch(who):
                        found.append((f"{key}.{field}[{j}]", f"expected a user or group name, got {who!r}"))
            found.extend((f"{key}.{k}", p) for k, p in environment_gl_problems(env.opengl, env.exclusive_gpus,
                                                                               self.backend))
        if (self.registry_username is None) != (self.registry_password is None):
            found.append(("registry_password" if self.registry_password is None else "registry_username",
                          "registry_username and registry_password go together"))
        names: set[str] = set()
        for i, node in enumerate(self.nodes):
            key = f"nodes[{i}]"
            if node.name in names:
                found.append((f"{key}.name", f"node {node.name!r} is defined twice"))
            names.add(node.name)
            found.extend((f"{key}.{k}", p) for k, p in _node_url_problems(node))
            if node.memory is not None:
                found.extend(_size_problem(f"{key}.memory", node.memory))
            found.extend((f"{key}.{k}", p) for k, p in node_gl_problems(
                node.url, node.gl_backends, node.three_dx_display, node.three_dx_cookie, node.render_devices))
            found.extend((f"{key}.{k}", p) for k, p in _publish_problems(node, self.backend))
            if self.backend == "swarm" and node.name == SWARM_MANAGER:
                found.append((f"{key}.name", f"{SWARM_MANAGER!r} names the Swarm manager; choose another name"))
        if self.backend == "swarm":
            if self.swarm is None:
                found.append(("swarm", "backend swarm needs the manager's address (launcher.swarm.manager)"))
            else:
                found.extend((f"swarm.{'manager' if k == 'url' else k}", p) for k, p in _node_url_problems(self.swarm))
        return found


def _publish_problems(node: NodeSettings, backend: str) -> list[tuple[str, str]]:
    if node.vnc_address != "published":
        if node.publish_address is not None:
            return [("publish_address", "applies to vnc_address: published only")]
        return []
    if backend == "swarm":
        return [("vnc_address", "published applies to the engines backend (Swarm publishes through its own mesh)")]
    if node.publish_address is None:
        return [("publish_address", "vnc_address: published needs the node's IP address to bind to")]
    try:
        address = ipaddress.ip_address(node.publish_address)
    except ValueError:
        return [("publish_address", f"expected an IP address such as 10.0.0.12, got {node.publish_address!r}")]
    if address.is_unspecified:
        return [("publish_address", "a session's VNC port is bound to one interface, not all of them")]
    return []


def _size_problem(key: str, value: str) -> list[tuple[str, str]]:
    try:
        parse_size(value)
    except ValueError as exc:
        return [(key, str(exc))]
    return []


def _node_url_problems(node: NodeSettings | SwarmSettings) -> list[tuple[str, str]]:
    unix = re.fullmatch(r"unix://(/\S+)", node.url)
    tcp = re.fullmatch(r"tcp://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", node.url)
    if not unix and not tcp:
        return [("url", f"expected unix:///path/docker.sock or tcp://host:port, got {node.url!r}")]
    if unix and node.tls is not None:
        return [("tls", "TLS applies to tcp:// engines only")]
    if tcp:
        host = tcp.group(1)
        if node.tls is None and host not in ("127.0.0.1", "localhost", "[::1]"):
            return [("tls", f"an engine reached over the network needs TLS files (the API is root on {host})")]
        if node.tls is not None:
            for field in ("ca_cert", "client_cert", "client_key"):
                path = getattr(node.tls, field)
                if not path.is_file():
                    return [(f"tls.{field}", f"file {path} does not exist")]
    return []
