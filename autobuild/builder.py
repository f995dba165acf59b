"""The one image builder: build, push with every streamed line checked, verify the registry's digest.

Used by autobuild's pipeline (a tag pushed to Bitbucket) and by `asci images build` (the
folders under images/), so both build and publish images the same way. Failures are
TransientError (engine, network or registry briefly away: retry) or BuildError (final).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Protocol

import docker
import docker.errors
import requests.exceptions

from autobuild.errors import BuildError, TransientError
from autobuild.inheritance import FromLine, split_reference
from registry.client import RegistryClient
from registry.errors import NotFound, RegistryError, RegistryUnavailable
from registry.service import RegistryAccess

# Engine and network trouble that goes away by itself.
TRANSIENT_TEXT = re.compile(
    r"connection refused|connection reset|i/o timeout|timeout|timed out|EOF|no such host|temporary failure"
    r"|service unavailable|50[0-4]|too many requests|broken pipe|could not resolve host|unable to access"
    r"|cannot connect to the docker daemon", re.IGNORECASE)
AUTH_TEXT = re.compile(r"unauthorized|authentication required|no basic auth credentials|denied", re.IGNORECASE)


class LogSink(Protocol):
    def write(self, line: str) -> None: ...

    def write_raw(self, chunk: str) -> None: ...


def build_image(client: docker.DockerClient, *, context: Path, dockerfile: Path, ref: str,
                build_args: dict[str, str], labels: dict[str, str], log: LogSink, no_cache: bool = False) -> str:
    """Build REF from CONTEXT with the legacy builder; the new image's id. NO_CACHE: no layer reused."""
    log.write(f"building {ref}")
    image_id = None
    try:
        inside = dockerfile.is_relative_to(context)
        stream = client.api.build(path=str(context),
                                  dockerfile=str(dockerfile.relative_to(context) if inside else dockerfile),
                                  tag=ref, labels=labels, buildargs=build_args, rm=True, forcerm=True, decode=True,
                                  nocache=no_cache)
        for line in stream:
            if "stream" in line:
                log.write_raw(line["stream"])
            elif "status" in line:
                log.write(line["status"])
            if "aux" in line and isinstance(line["aux"], dict) and "ID" in line["aux"]:
                image_id = line["aux"]["ID"]
            if "error" in line:
                message = line["error"].strip()
                if TRANSIENT_TEXT.search(message) and "returned a non-zero code" not in message:
                    raise TransientError("build", message)
                raise BuildError("build", message)
        if image_id is None:
            image_id = client.images.get(ref).id
    except docker.errors.ImageNotFound:
        raise BuildError("build", f"the engine reported success but has no image {ref}") from None
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise TransientError("build", f"Docker Engine: {exc}") from None
    return image_id


def pull_bases(client: docker.DockerClient, parents: Iterable[FromLine], access: RegistryAccess,
               log: LogSink) -> None:
    """Base images from our registry are pulled with our credentials; others must already be local."""
    for parent in parents:
        name, tag = split_reference(parent.image)
        if not name.startswith(f"{access.address}/"):
            continue
        try:
            client.images.pull(name, tag=tag, auth_config=access.auth_config())
            log.write(f"pulled base {name}:{tag}")
        except docker.errors.NotFound:
            raise BuildError("build", f"base image {name}:{tag} is not in the registry") from None
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
            if TRANSIENT_TEXT.search(str(exc)):
                raise TransientError("build", f"pulling base {name}:{tag}: {exc}") from None
            raise BuildError("build", f"pulling base {name}:{tag}: {exc}") from None


def push_image(client: docker.DockerClient, image: str, tag: str, access: RegistryAccess, log: LogSink) -> str:
    """Push IMAGE:TAG; the digest the engine reports."""
    digest = None
    try:
        for line in client.api.push(image, tag=tag, stream=True, decode=True, auth_config=access.auth_config()):
            # The engine reports push failures inside the stream, never as an exception.
            if "error" in line:
                message = line["error"].strip()
                if AUTH_TEXT.search(message):
                    raise BuildError("push", f"the registry refused our credentials: {message}")
                raise TransientError("push", message)
            if "aux" in line and "Digest" in line["aux"]:
                digest = line["aux"]["Digest"]
            elif "status" in line and "id" not in line:
                log.write(line["status"])
    except (docker.errors.APIError, requests.exceptions.ConnectionError) as exc:
        raise TransientError("push", f"Docker Engine: {exc}") from None
    if digest is None:
        raise TransientError("push", "the engine reported no digest for the push")
    log.write(f"pushed {image}:{tag} as {digest}")
    return digest


def verify_digest(registry: RegistryClient, repository: str, tag: str, digest: str) -> None:
    """The registry must hold exactly DIGEST for REPOSITORY:TAG.

    REGISTRY is the caller's client for this one build: builds run in parallel threads and a client
    learns auth state as it goes, while one build's calls share its token.
    """
    try:
        stored = registry.manifest_digest(repository, tag)
    except RegistryUnavailable as exc:
        raise TransientError("verify", f"registry unavailable: {exc}") from None
    except NotFound:
        raise TransientError("verify", f"the registry does not list {repository}:{tag} after the push") from None
    except RegistryError as exc:
        raise BuildError("verify", f"registry: {exc}") from None
    if stored != digest:
        raise BuildError("verify", f"registry holds {stored} for {repository}:{tag}, not the pushed {digest}")
