"""The platform's own image: this working tree's distribution, entry point `asci`."""
from __future__ import annotations

import pytest

from asci_core import __version__
from tests.conftest import LABELS
from tests.integration.images_support import image

pytestmark = pytest.mark.integration


def test_platform_image_runs_asci_version_and_config_check(stack, docker_client):
    platform = image(stack, docker_client, "asci")
    version = docker_client.containers.run(platform.ref, ["--version"], remove=True, labels=LABELS)
    assert version.decode().strip() == f"asci {__version__}"
    checked = docker_client.containers.run(platform.ref, ["config", "check"], remove=True, labels=LABELS,
                                           stderr=True)
    assert checked.decode().strip().endswith(": ok")
    user = docker_client.containers.run(platform.ref, entrypoint=["id", "-u"], remove=True, labels=LABELS)
    assert user.decode().strip() != "0"
