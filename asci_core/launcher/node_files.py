"""Read one file of a node (its bytes or its owner and mode) through the node's engine.

A launcher cannot open a file on a remote node; the node's engine can. A container is created
from an image the node already has, with the file bind-mounted read-only, and the engine is asked
for that path as an archive. The container is never started: no process runs, nothing reaches a
log, it has no network, and it is removed before this returns. The engine (root on the node) reads
the file, so its owner and mode on the node need not change for the launcher.
"""
from __future__ import annotations

import io
import secrets
import tarfile
from dataclasses import dataclass
from typing import Any

import docker.errors
import docker.types

from asci_core.errors import AsciError

PEEK_TARGET = "/run/asci-peek/file"
PEEK_LABEL = "asci.node-file-reader"
# Cookies and device nodes are tiny: anything bigger is a wrong path, and is not read.
MAX_BYTES = 64 * 1024


class NodeFileError(AsciError):
    """The path cannot be read on the node; the message says why, without its contents."""


@dataclass(frozen=True)
class NodeFile:
    uid: int
    gid: int
    mode: int  # permission bits only
    kind: str  # "file", "char" (a device), or "other"
    data: bytes = b""  # a regular file's contents


def peek(client: Any, image: str, path: str, labels: dict[str, str] | None = None) -> NodeFile:
    """PATH as the node sees it. IMAGE must be on the node (the session's own image is)."""
    try:
        container = client.containers.create(
            image, command=["true"], name=f"asci-peek-{secrets.token_hex(6)}", network_mode="none",
            labels={**(labels or {}), PEEK_LABEL: "1"},
            mounts=[docker.types.Mount(PEEK_TARGET, path, type="bind", read_only=True)])
    except docker.errors.APIError as exc:
        # Typically "bind source path does not exist": the engine's words say which.
        raise NodeFileError(_explain(exc)) from None
    try:
        try:
            stream, info = container.get_archive(PEEK_TARGET)
        except docker.errors.APIError as exc:
            raise NodeFileError(_explain(exc)) from None
        if int(info.get("size") or 0) > MAX_BYTES:
            raise NodeFileError(f"{info.get('size')} bytes, more than the {MAX_BYTES} expected")
        archive = _read_bounded(stream, MAX_BYTES + 64 * 1024)
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    return _first_member(archive)


def _read_bounded(stream: Any, limit: int) -> bytes:
    out = bytearray()
    for chunk in stream:
        out += chunk
        if len(out) > limit:
            raise NodeFileError("the engine sent more than the file's stated size")
    return bytes(out)


def _first_member(archive: bytes) -> NodeFile:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            member = tar.next()
            if member is None:
                raise NodeFileError("the engine sent an empty archive")
            data = b""
            if member.isfile():
                handle = tar.extractfile(member)
                data = handle.read(MAX_BYTES + 1) if handle is not None else b""
    except tarfile.TarError as exc:
        raise NodeFileError(f"the engine's archive is unreadable ({exc})") from None
    kind = "file" if member.isfile() else "char" if member.ischr() else "other"
    return NodeFile(member.uid, member.gid, member.mode & 0o7777, kind, data)


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation if isinstance(exc.explanation, str) and exc.explanation else str(exc)
    return text.splitlines()[0][:200] if text else "the engine refused"


def sweep_readers(client: Any, older_than: float = 300.0, now: float | None = None) -> int:
    """Remove reader containers left by a launcher that stopped between create and remove; how many.

    A reader lives well under a second, so one older than OLDER_THAN seconds is nobody's any more
    (another launcher's reader in progress is younger and is left alone)."""
    import time

    now = time.time() if now is None else now
    removed = 0
    for summary in client.api.containers(all=True, filters={"label": PEEK_LABEL}):
        if now - float(summary.get("Created") or now) < older_than:
            continue
        try:
            client.api.remove_container(summary["Id"], force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    return removed
