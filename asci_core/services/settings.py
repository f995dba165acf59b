"""The `services:` section: ASCI's long-running containers and how each one follows its image.

A service names an image repository in the facility registry and a tag policy:
`follow: pinned` runs exactly `tag`; `patch`, `minor` and `major` start at `tag`
and take newer releases (semantic-version order, registry.semver) within the
same minor line, the same major line, or any.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asci_core.config_base import Secret, setting

# Service names become the `asci.component` label, whose rule (asci_logging) is a lower-case word.
SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*")
TAG = re.compile(r"\w[\w.-]{0,127}")


@dataclass(frozen=True)
class PortSettings:
    container: int = setting(help="port inside the container", check="port")
    host: int = setting(help="port published on the node (host mode)", check="port")
    host_ip: str = setting("0.0.0.0", help="address the published port binds to", check="host")


@dataclass(frozen=True)
class ServiceMountSettings:
    source: str = setting(help="host path or named volume")
    target: str = setting(help="path inside the container")
    read_only: bool = setting(True, help="mount read-only")


@dataclass(frozen=True)
class SecretFileSettings:
    name: str = setting(help="file name under /run/secrets/ in the container")
    value: Secret = setting(help="the secret: a string, {env: VARIABLE} or {file: PATH}")


@dataclass(frozen=True)
class HealthSettings:
    http_path: str | None = setting(None, help="HTTP path answered with 2xx when healthy, e.g. /healthz")
    port: int | None = setting(None, help="container port of the HTTP check (default: the first published port)",
                               check="port")
    command: list[str] = setting(default_factory=list, help="command run in the container; exit 0 means healthy")
    interval: float = setting(1.0, help="seconds between checks", check="positive")
    timeout: float = setting(3.0, help="seconds one check may take", check="positive")
    wait: float = setting(60.0, help="seconds a new container has to become healthy", check="positive")


@dataclass(frozen=True)
class FrontSettings:
    enabled: bool = setting(True, help="published ports belong to a long-lived front container that forwards TCP "
                                       "to the serving version, so a roll refuses no connection; false: the "
                                       "version publishes them itself (a gap at each roll, but the service "
                                       "sees clients' own addresses)")
    hold: float = setting(10.0, help="seconds the front holds a new connection while no version answers "
                                     "(a stop-first roll, a version starting); a crashed one's are closed at once",
                          check="positive")
    drain: float = setting(30.0, help="seconds a retired version gets to finish the connections the front "
                                      "opened to it before it is stopped", check=("range", 0, 3600))


@dataclass(frozen=True)
class ServiceSettings:
    name: str = setting(help="service name: container names and the asci.component label, e.g. webhooks")
    repository: str = setting(help="image repository in the facility registry, e.g. asci/platform")
    tag: str = setting(help="the pinned tag, or the first tag a following service runs")
    follow: Literal["pinned", "patch", "minor", "major"] = setting(
        "pinned", help="pinned: only `tag`; patch | minor | major: newer releases within that range")
    command: list[str] = setting(default_factory=list, help="command instead of the image's own")
    ports: list[PortSettings] = setting(default_factory=list, help="published ports (host mode)")
    env: dict[str, str] = setting(default_factory=dict, help="environment variables (not secrets: docker inspect shows them)")
    secrets: list[SecretFileSettings] = setting(default_factory=list,
                                                help="secrets as read-only files under /run/secrets/")
    mounts: list[ServiceMountSettings] = setting(default_factory=list, help="host paths or volumes")
    group_add: list[str] = setting(default_factory=list,
                                   help="extra groups (names or ids) of the process, e.g. the Docker socket's gid")
    init: bool = setting(True, help="run under the engine's init (docker-init): SIGTERM reaches the process even "
                                    "when it ignores signals as PID 1, so a retired container stops at once")
    node: str = setting("local", help="node from launcher.nodes that runs it (default: the local engine)")
    health: HealthSettings = setting(default_factory=HealthSettings, help="how a new container proves it works")
    front: FrontSettings = setting(default_factory=FrontSettings,
                                   help="the front that owns the published ports (see README, Services)")
    deploy_when_built: bool = setting(
        False, help="a service never deployed is deployed by the first build (or registry check) of a tag its "
                    "policy takes; otherwise its first deploy is `asci services deploy` or the start of `asci serve`")
    replace: Literal["start-first", "stop-first"] = setting(
        "start-first", help="start-first: the new container proves healthy before the old one stops; "
                            "stop-first: for services that cannot run twice")


@dataclass(frozen=True)
class ServicesSettings:
    workdir: Path | None = setting(None, help="state directory (default: STATE_DIR/services)")
    check_interval: float = setting(300.0, help="seconds between registry checks for tags pushed by others "
                                               "(asci serve)", check="positive")
    stop_timeout: int = setting(10, help="seconds a retired container gets to exit", check=("range", 0, 600))
    definitions: list[ServiceSettings] = setting(default_factory=list, help="the services ASCI runs")

    def get(self, name: str) -> ServiceSettings | None:
        return next((s for s in self.definitions if s.name == name), None)

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, svc in enumerate(self.definitions):
            key = f"definitions[{i}]"
            if not SERVICE_NAME.fullmatch(svc.name):
                found.append((f"{key}.name", f"expected a lower-case word (letters, digits, _), got {svc.name!r}"))
            if svc.name in seen:
                found.append((f"{key}.name", f"service {svc.name!r} is defined twice"))
            seen.add(svc.name)
            if not REPOSITORY.fullmatch(svc.repository):
                found.append((f"{key}.repository", f"expected a repository such as asci/platform, got {svc.repository!r}"))
            if not TAG.fullmatch(svc.tag):
                found.append((f"{key}.tag", f"not a valid image tag: {svc.tag!r}"))
            elif svc.follow != "pinned":
                from registry.semver import parse_version

                if parse_version(svc.tag) is None:
                    found.append((f"{key}.tag", f"follow: {svc.follow} needs a version tag such as v1.0.0, got {svc.tag!r}"))
            for name in svc.env:
                if not ENV_NAME.fullmatch(name):
                    found.append((f"{key}.env.{name}", "not a valid environment variable name"))
            names = [s.name for s in svc.secrets]
            for j, name in enumerate(names):
                if not FILE_NAME.fullmatch(name):
                    found.append((f"{key}.secrets[{j}].name", f"expected a file name, got {name!r}"))
                elif names.index(name) != j:
                    found.append((f"{key}.secrets[{j}].name", f"secret {name!r} is defined twice"))
            hosts = [p.host for p in svc.ports]
            for j, port in enumerate(hosts):
                if hosts.index(port) != j:
                    found.append((f"{key}.ports[{j}].host", f"host port {port} is published twice"))
            health = svc.health
            if health.http_path is not None and health.command:
                found.append((f"{key}.health", "choose an HTTP check or a command, not both"))
            if health.http_path is not None:
                if not health.http_path.startswith("/"):
                    found.append((f"{key}.health.http_path", f"expected a path such as /healthz, got {health.http_path!r}"))
                if health.port is None and not svc.ports:
                    found.append((f"{key}.health.port", "an HTTP check needs a port (or a published port)"))
        return found
