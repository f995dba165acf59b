"""The image family for the tests, built through `asci images build`'s own code.

Builds are content-addressed, so the first test run on a machine builds each image and every
later run (or module) gets cache hits: asking twice costs a hash of the folder, not a build.
"""
from __future__ import annotations

import socket
import time
from typing import Callable

import docker

from autobuild.images import SOURCE_ROOT, BuildOutcome, Family, build_family, content_tag, default_images_dir
from tests.conftest import LABELS

TAG = "latest"  # the README's tag: the tests and a newcomer's first command share their cache
_built: dict[str, BuildOutcome] = {}


class _QuietLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)

    def write_raw(self, chunk: str) -> None:
        self.lines.append(chunk)


# What a site configures as autobuild.image_files; the tests point it at the vendored source.
VENDOR = SOURCE_ROOT.parent / "shared" / "vendor"
CONTEXT_FILES = {"desktop-gpu": {"virtualgl-package": VENDOR / "virtualgl-3.1.4.tar.gz"}}


def family(stack) -> Family:
    return Family(default_images_dir(), stack.registry, stack.config.stack.base_image.name,
                  context_files=CONTEXT_FILES)


def image(stack, client: docker.DockerClient, name: str) -> BuildOutcome:
    """NAME (and its parents) built once per test process; the outcome carries the image id."""
    if name not in _built:
        for outcome in build_family(client, family(stack), [name], tag=TAG, push=False, log=_QuietLog()):
            _built[outcome.name] = outcome
    return _built[name]


def by_content(stack, client: docker.DockerClient, name: str) -> str:
    """NAME as this tree builds it, by its content tag: `latest` may be another checkout's build."""
    outcome = image(stack, client, name)
    return family(stack).ref(name, content_tag(outcome.inputs))


def wait_for(what: str, probe: Callable[[], object], timeout: float = 30.0, every: float = 0.1):
    """PROBE() until it returns something truthy; its value. Exceptions count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - a probe that fails is retried until the deadline
            last = exc
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def run_desktop(client: docker.DockerClient, ref: str, name: str, **env: str):
    return client.containers.run(ref, detach=True, name=name, labels=LABELS,
                                 environment={k: v for k, v in env.items() if v is not None})


def address(container) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["IPAddress"]


def set_password(client: docker.DockerClient, container, password: str, user: str | None = None) -> tuple[int, str]:
    """`docker exec -i [-u USER] CONTAINER asci-set-vnc-password` with PASSWORD on stdin: (exit code, output)."""
    exec_id = client.api.exec_create(container.id, ["asci-set-vnc-password"], stdin=True, user=user or "")["Id"]
    sock = client.api.exec_start(exec_id, socket=True)
    raw = sock._sock  # the hijacked connection: write stdin, then half-close so the command sees EOF
    try:
        raw.sendall(password.encode() + b"\n")
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(20)
        output = b""
        while chunk := raw.recv(4096):
            output += chunk
    finally:
        sock.close()
    code = wait_for("exec to finish", lambda: (lambda r: None if r["Running"] else r)(client.api.exec_inspect(exec_id)),
                    timeout=20)["ExitCode"]
    return code, output.decode(errors="replace")
