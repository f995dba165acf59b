"""A service's front: the container that owns its published ports and forwards them to the serving version.

Two containers cannot bind one host port, so without a front a roll must stop the old version before
the new one can publish (a gap of a container start). With a front, each version (a *backend*) runs on
the service's own bridge network (`asci-svc-NAME`) and publishes nothing; the front — one small
container per service, `asci-front-NAME`, restarted by the engine, independent of `asci serve` — holds
the host ports and forwards each new TCP connection to the current backend by container name. A roll
starts the new backend, waits for its health check, switches the front, lets the old backend finish
the connections the front opened to it (bounded), then stops it: no connection is refused.

The front image is built on the service's node from the local base image with Debian's python3 and
`front_proxy.py`, tagged by a hash of those inputs, so it is built once per node and reused.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from asci_core.errors import AsciError
from asci_logging.container_logging import log_config

from .settings import ServiceSettings

FRONT_LABEL = "asci.service-front"  # the service's name; not asci.service: a front is not a version
FRONT_CONFIG_LABEL = "asci.service-front-config"
IMAGE_REPOSITORY = "asci/service-front"
PROXY_SOURCE = Path(__file__).with_name("front_proxy.py")
# Debian's python3 from the local base image's own apt sources: nothing from a public image hub.
DOCKERFILE = """\
ARG BASE_IMAGE=debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 \\
 && apt-get clean \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \\
 && install -d -o nobody -g nogroup -m 0700 /var/lib/asci-front /run/asci-front
COPY asci-front /usr/local/bin/asci-front
# Containers may bind any port unprivileged (the engine sets ip_unprivileged_port_start=0).
USER nobody
ENTRYPOINT ["python3", "/usr/local/bin/asci-front"]
"""
_build_lock = threading.Lock()


class FrontError(AsciError):
    pass


def fronted(svc: ServiceSettings) -> bool:
    return svc.front.enabled and bool(svc.ports)


def network_name(svc: ServiceSettings) -> str:
    return f"asci-svc-{svc.name}"


def front_name(svc: ServiceSettings) -> str:
    return f"asci-front-{svc.name}"


def image_ref(client: Any, base_image: str) -> str:
    try:
        base_id = client.images.get(base_image).id
    except docker.errors.ImageNotFound:
        raise FrontError(f"the front image needs the base image {base_image} on this node") from None
    inputs = hashlib.sha256(DOCKERFILE.encode() + b"\0" + PROXY_SOURCE.read_bytes() + b"\0" + base_id.encode())
    return f"{IMAGE_REPOSITORY}:{inputs.hexdigest()[:16]}"


def ensure_image(client: Any, base_image: str) -> str:
    """The front image's reference on this node; built on first use (about half a minute, then reused)."""
    ref = image_ref(client, base_image)
    with _build_lock:
        try:
            client.images.get(ref)
            return ref
        except docker.errors.ImageNotFound:
            pass
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, data, mode in (("Dockerfile", DOCKERFILE.encode(), 0o644),
                                     ("asci-front", PROXY_SOURCE.read_bytes(), 0o755)):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        try:
            client.images.build(fileobj=context, custom_context=True, tag=ref, rm=True, forcerm=True,
                                buildargs={"BASE_IMAGE": base_image}, labels={FRONT_LABEL: "image"})
        except docker.errors.BuildError as exc:
            raise FrontError(f"cannot build the front image {ref}: {exc.msg}"[:300]) from None
        return ref


def ensure_network(client: Any, svc: ServiceSettings) -> None:
    name = network_name(svc)
    if not client.networks.list(names=[name]):
        try:
            client.networks.create(name, driver="bridge", labels={FRONT_LABEL: svc.name})
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # created meanwhile by another roll on this engine
                raise


def front_config(svc: ServiceSettings, image: str) -> str:
    shape = {"ports": [(p.container, p.host, p.host_ip) for p in svc.ports], "hold": svc.front.hold, "image": image}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:10]


def find(client: Any, svc: ServiceSettings, base_image: str) -> Any | None:
    """The service's front, running, if it matches the config; one that does not is removed (None)."""
    try:
        front = client.containers.get(front_name(svc))
    except docker.errors.NotFound:
        return None
    if front.labels.get(FRONT_CONFIG_LABEL) == front_config(svc, image_ref(client, base_image)):
        if front.status != "running":
            front.start()
        return front
    front.remove(force=True)  # ports or image changed: the caller creates it again
    return None


def create(client: Any, svc: ServiceSettings, base_image: str, backend: str | None) -> Any:
    """Start the service's front, forwarding to BACKEND (None: holding connections). The host ports must be free."""
    image = ensure_image(client, base_image)
    ensure_network(client, svc)
    name = front_name(svc)
    logging = log_config(svc.name, name)
    ports = ",".join(str(port) for port in sorted({p.container for p in svc.ports}))  # one listener per port
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass

    def make() -> Any:
        return client.containers.create(
            image, command=["serve", "--ports", ports, "--hold", f"{svc.front.hold:g}"], name=name,
            labels={**logging.labels, FRONT_LABEL: svc.name, FRONT_CONFIG_LABEL: front_config(svc, image)},
            network=network_name(svc), ports={f"{p.container}/tcp": (p.host_ip, p.host) for p in svc.ports},
            log_config=logging.log_config, init=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            restart_policy={"Name": "unless-stopped"})

    try:
        front = make()
    except docker.errors.ImageNotFound:  # removed as unused by another service's front replacement meanwhile
        image = ensure_image(client, base_image)
        front = make()
    try:
        front.start()
    except docker.errors.APIError as exc:
        front.remove(force=True)
        raise FrontError(f"cannot start the front of {svc.name}: {exc.explanation or exc}"[:300]) from None
    try:
        switch(front, backend)
    except FrontError:
        front.remove(force=True)  # frees the host ports for the version being restored
        raise
    remove_unused_images(client)
    return front


def remove_unused_images(client: Any) -> list[str]:
    """Remove this node's front images that no container uses (left by earlier versions of front_proxy.py
    or of the base image); only images of IMAGE_REPOSITORY carrying the front's label. The removed tags."""
    # Every container of the node, stopped ones too: a stopped front still needs its image to start again.
    used = {c.get("ImageID") for c in client.api.containers(all=True)}
    removed = []
    for image in client.images.list(IMAGE_REPOSITORY, filters={"label": f"{FRONT_LABEL}=image"}):
        if image.id in used:
            continue
        tags = [t for t in image.tags if t.startswith(f"{IMAGE_REPOSITORY}:")]
        if not tags or len(tags) != len(image.tags):
            continue  # also tagged as something else: not only ours to remove
        for tag in tags:
            try:
                client.images.remove(tag, noprune=False)  # no force: an image in use stays
            except docker.errors.APIError as exc:  # in use by a container created meanwhile, or gone
                if exc.status_code not in (404, 409):
                    raise
                continue
            removed.append(tag)
    return removed


def _ask(front: Any, *words: str) -> str:
    """One control command in the front; its answer after `ok`."""
    try:
        result = front.exec_run(["python3", "/usr/local/bin/asci-front", *words], demux=False)
    except docker.errors.APIError as exc:
        raise FrontError(f"front of {front.name}: {words[0]} could not run ({exc.explanation or exc})"[:300]) from None
    answer = (result.output or b"").decode("utf-8", "replace").strip()
    if result.exit_code != 0 or not answer.startswith("ok"):
        raise FrontError(f"front of {front.name}: {' '.join(words[:1])} failed: {answer[-200:]}")
    return answer[2:].strip()


def _ask_when_listening(front: Any, *words: str, attempts: int = 50) -> str:
    """As _ask, retried for a few seconds: the control socket appears a moment after the front starts."""
    for attempt in range(attempts):
        try:
            return _ask(front, *words)
        except FrontError:
            if attempt == attempts - 1:
                raise
            front.reload()
            if front.status != "running":
                raise
            time.sleep(0.1)  # the front's control socket appears a moment after its start
    raise AssertionError("unreachable")


def switch(front: Any, backend: str | None) -> str | None:
    """New connections go to BACKEND from now on (None: they are held); the backend before it."""
    previous = _ask_when_listening(front, "switch", backend or "-")
    return None if previous == "-" else previous


def drain(front: Any, backend: str, seconds: float) -> int:
    """Wait up to SECONDS until the front has no open connection to BACKEND; how many are left."""
    return int(_ask(front, "drain", backend, f"{seconds:g}"))


def check(front: Any, backend: str, port: int, path: str, timeout: float) -> str | None:
    """The HTTP health check of BACKEND made from the front, inside the service network: None when 2xx."""
    try:
        result = front.exec_run(["python3", "/usr/local/bin/asci-front", "check", backend, str(port), path,
                                 f"{timeout:g}"], demux=False)
    except docker.errors.APIError as exc:
        return f"the front could not run the check ({exc.explanation or exc})"[:200]
    if result.exit_code == 0:
        return None
    answer = (result.output or b"").decode("utf-8", "replace").strip()
    return answer.removeprefix("error ")[:200] or f"check exited with {result.exit_code}"


def running(client: Any, svc: ServiceSettings) -> Any | None:
    """The service's front if it runs (looks only: changes nothing)."""
    try:
        front = client.containers.get(front_name(svc))
    except docker.errors.NotFound:
        return None
    return front if front.status == "running" else None


def current(front: Any) -> str | None:
    return json.loads(_ask_when_listening(front, "show"))["backend"]


@dataclass(frozen=True)
class FrontState:
    container: str
    state: str  # the engine's status (running, restarting, exited, ...) or "missing"
    backend: str | None  # the version it forwards to, as `show` answers; None when it cannot say
    since: str | None  # when the front container last started (the engine's time)
    problem: str | None  # None when it runs and forwards to the expected version


def describe(client: Any, svc: ServiceSettings, expected: str | None) -> FrontState:
    """The front as it is (looks only): running, answering `show`, forwarding to EXPECTED."""
    name = front_name(svc)
    try:
        front = client.containers.get(name)
    except docker.errors.NotFound:
        return FrontState(name, "missing", None, None, "the front is missing: its ports answer nothing")
    since = front.attrs["State"].get("StartedAt")
    if front.status != "running":
        return FrontState(name, front.status, None, since, f"the front is {front.status}: its ports answer nothing")
    try:
        backend = json.loads(_ask(front, "show"))["backend"]
    except (FrontError, ValueError, KeyError) as exc:
        return FrontState(name, "running", None, since, f"the front does not answer show: {exc}"[:200])
    if backend != expected:
        return FrontState(name, "running", backend, since,
                          f"the front forwards to {backend or 'nothing (holding)'}, not to {expected or 'nothing'}")
    return FrontState(name, "running", backend, since, None)
