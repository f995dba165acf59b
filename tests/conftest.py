"""Shared fixtures: the real stack once per session, and names that never collide."""
from __future__ import annotations

import re
import socket
import uuid
from dataclasses import dataclass
from typing import Iterator

import docker
import pytest

from asci_core.config import Config, load_config
from asci_core.stack.docker_engine import docker_client as new_docker_client
from registry.service import RegistryAccess

TEST_LABEL = "asci.test"
# Containers are labelled with this run's token, so cleanup never touches another run's containers.
TEST_RUN = uuid.uuid4().hex[:12]
LABELS = {TEST_LABEL: TEST_RUN}


@pytest.fixture(scope="session")
def config() -> Config:
    # The embedded defaults, or $ASCI_CONFIG: the tests run against what the product runs against.
    return load_config()


@dataclass(frozen=True)
class Stack:
    config: Config
    registry: RegistryAccess
    search_url: str


@pytest.fixture(scope="session")
def stack(config: Config) -> Stack:
    """Bring up every part that is not answering; leave it running for the next run to reuse."""
    from asci_core.stack.manager import StackManager
    from registry.service import registry_access

    report = StackManager(config).up()
    if not report.ok:
        details = "\n".join(f"{p.name}: {p.action}: {p.detail}" for p in report.parts if not p.up)
        pytest.fail(f"the stack did not come up:\n{details}", pytrace=False)
    return Stack(config, registry_access(config), config.stack.search.url.rstrip("/"))


@pytest.fixture(scope="session")
def docker_client(stack: Stack) -> Iterator[docker.DockerClient]:
    client = new_docker_client(stack.config.stack.docker.socket, timeout=300)
    yield client
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={TEST_RUN}"}):
        container.remove(force=True)
    client.close()


@pytest.fixture
def unique(request: pytest.FixtureRequest):
    """unique("img") -> "asci-test-<test name>-img-<random>": safe for containers, repos and indices."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    token = uuid.uuid4().hex[:8]

    def make(kind: str = "") -> str:
        parts = ["asci-test", slug, kind, token]
        return "-".join(p for p in parts if p)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ldap_server():
    """A real slapd on loopback with posix users and groups (tests/support/slapd.py), for the whole run."""
    from tests.support.slapd import LdapUser, start_slapd

    server = start_slapd([LdapUser("lena", 6001, 6001, "lena-pass-1", ("i03",)),
                          LdapUser("mark", 6002, 6002, "mark-pass-2", ("i04",)),
                          LdapUser("omar", 6003, 6003, "omar-pass-3", ("i03", "i04"))])
    yield server
    server.stop()
