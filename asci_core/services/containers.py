"""How a service's container is made: deterministic name, labels, logging, secrets as files, health."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Any

import docker.errors
import requests

from asci_core.errors import AsciError
from asci_logging.container_logging import log_config

from .front import check as check_through_front
from .settings import ServiceSettings

SERVICE_LABEL = "asci.service"
TAG_LABEL = "asci.service-tag"
DIGEST_LABEL = "asci.service-digest"
CONFIG_LABEL = "asci.service-config"
ROLE_LABEL = "asci.service-role"  # "serving" or "candidate" (a health-gated trial without published ports)
SECRETS_DIR = "/run/secrets"


def config_hash(svc: ServiceSettings) -> str:
    """Short fingerprint of everything but the tag policy: a change means the container is recreated."""
    shape = {"command": svc.command, "ports": [(p.container, p.host, p.host_ip) for p in svc.ports],
             "env": svc.env, "secrets": {s.name: hashlib.sha256(s.value.reveal().encode()).hexdigest() for s in svc.secrets},
             "mounts": [(m.source, m.target, m.read_only) for m in svc.mounts], "repository": svc.repository,
             "init": svc.init, "group_add": svc.group_add,
             # Behind a front a version publishes nothing and runs on the service network: another container.
             "front": svc.front.enabled and bool(svc.ports)}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:10]


def container_name(svc: ServiceSettings, tag: str, candidate: bool = False) -> str:
    safe_tag = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    return f"asci-svc-{svc.name}-{safe_tag}-{config_hash(svc)}" + ("-candidate" if candidate else "")


def write_secrets(svc: ServiceSettings, workdir: Path) -> Path:
    """Each secret as a 0600 file under WORKDIR/NAME/secrets; the directory is mounted read-only."""
    directory = workdir / svc.name / "secrets"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    wanted = {s.name for s in svc.secrets}
    for old in directory.iterdir():
        if old.name not in wanted:
            old.unlink()
    for secret in svc.secrets:
        path = directory / secret.name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret.value.reveal())
        os.chmod(path, 0o600)
    return directory


class SecretsNotCopied(AsciError):
    pass


def put_secrets(container: Any, svc: ServiceSettings) -> None:
    """Each secret as a 0400 file under /run/secrets/, copied into the created container through its engine:
    on a node other than this host there is no local file to mount. Owned by the image's user."""
    uid, gid = _user_ids(container)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, mode, owner in (("run", 0o755, (0, 0)), ("run/secrets", 0o500, (uid, gid))):
            info = tarfile.TarInfo(name)
            info.type, info.mode, (info.uid, info.gid) = tarfile.DIRTYPE, mode, owner
            tar.addfile(info)
        for secret in svc.secrets:
            data = secret.value.reveal().encode()
            info = tarfile.TarInfo(f"{SECRETS_DIR.lstrip('/')}/{secret.name}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o400, uid, gid
            tar.addfile(info, io.BytesIO(data))
    if not container.put_archive("/", archive.getvalue()):
        raise SecretsNotCopied(f"the engine did not take the secrets of {container.name}")


def _user_ids(container: Any) -> tuple[int, int]:
    """The uid and gid the container runs as: its User setting, names looked up in the image's /etc/passwd."""
    user, _, group = (container.attrs["Config"].get("User") or "0").partition(":")
    if user.isdigit() and (not group or group.isdigit()):
        return int(user), int(group or 0)
    chunks, _ = container.get_archive("/etc/passwd")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.extractfile(tar.getmembers()[0])
        lines = member.read().decode("utf-8", "replace").splitlines() if member else []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(group) if group.isdigit() else int(fields[3])
    raise SecretsNotCopied(f"user {user!r} of {container.name} is not in the image's /etc/passwd: "
                           "cannot give it its secrets")


def create(client: Any, svc: ServiceSettings, image: str, tag: str, digest: str | None, workdir: Path,
           *, candidate: bool, network: str | None = None, copy_secrets: bool = False) -> Any:
    """A version's container. With NETWORK (a fronted service) it joins that network and publishes nothing.
    With COPY_SECRETS (a node other than this host) the secrets are copied in instead of mounted."""
    name = container_name(svc, tag, candidate)
    logging = log_config(svc.name, name)
    labels = {**logging.labels, SERVICE_LABEL: svc.name, TAG_LABEL: tag, DIGEST_LABEL: digest or "",
              CONFIG_LABEL: config_hash(svc), ROLE_LABEL: "candidate" if candidate else "serving"}
    volumes = {m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in svc.mounts}
    if svc.secrets and not copy_secrets:
        volumes[str(write_secrets(svc, workdir))] = {"bind": SECRETS_DIR, "mode": "ro"}
    # A candidate publishes nothing: the serving container holds the host ports while the candidate proves itself.
    ports = {} if candidate or network else {f"{p.container}/tcp": (p.host_ip, p.host) for p in svc.ports}
    try:
        client.containers.get(name).remove(force=True)  # a leftover of an interrupted attempt
    except docker.errors.NotFound:
        pass
    container = client.containers.create(image, command=svc.command or None, name=name, labels=labels,
                                    environment=dict(svc.env), volumes=volumes, ports=ports,
                                    log_config=logging.log_config, init=svc.init,
                                    group_add=list(svc.group_add) or None, network=network,
                                    restart_policy={"Name": "no"} if candidate else {"Name": "unless-stopped"})
    if svc.secrets and copy_secrets:
        try:
            put_secrets(container, svc)
        except (docker.errors.APIError, tarfile.TarError) as exc:
            container.remove(force=True)
            raise SecretsNotCopied(f"cannot copy the secrets into {name}: {exc}"[:300]) from None
        except SecretsNotCopied:
            container.remove(force=True)
            raise
    return container


def health_port(svc: ServiceSettings) -> int | None:
    return svc.health.port or (svc.ports[0].container if svc.ports else None)


def wait_healthy(container: Any, svc: ServiceSettings, front: Any | None = None) -> str | None:
    """None once the container answers its health check; otherwise why it did not within `health.wait`.
    With the service's FRONT the HTTP check is made from the front, inside the service network."""
    health = svc.health
    deadline = time.monotonic() + health.wait
    last = "no check ran"
    while True:
        container.reload()
        state = container.attrs["State"]
        if not state.get("Running"):
            return f"container exited with code {state.get('ExitCode')}"
        last = check_once(container, svc, front) or ""
        if not last:
            return None
        if time.monotonic() + health.interval > deadline:
            return f"not healthy after {health.wait:g}s: {last}"
        time.sleep(health.interval)  # the check's own period: the thing waited for is the service's answer


def check_once(container: Any, svc: ServiceSettings, front: Any | None = None) -> str | None:
    health = svc.health
    if health.command:
        try:
            result = container.exec_run(health.command, demux=False)
        except docker.errors.APIError as exc:
            return f"health command could not run ({exc.explanation or exc})"[:200]
        return None if result.exit_code == 0 else f"health command exited with {result.exit_code}"
    if health.http_path is None:
        return None  # no check configured: running is healthy
    if front is not None:
        return check_through_front(front, container.name, health_port(svc) or 0, health.http_path, health.timeout)
    address = _container_address(container)
    if address is None:
        return "container has no network address"
    try:
        response = requests.get(f"http://{address}:{health_port(svc)}{health.http_path}", timeout=health.timeout,
                                allow_redirects=False)
    except requests.RequestException as exc:
        return f"{health.http_path} did not answer ({type(exc).__name__})"
    return None if 200 <= response.status_code < 300 else f"{health.http_path} answered {response.status_code}"


def _container_address(container: Any) -> str | None:
    networks = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    for net in networks.values():
        if net.get("IPAddress"):
            return net["IPAddress"]
    return None
