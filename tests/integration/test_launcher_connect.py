"""`connect` against a stand-in image whose password command records what it got on stdin.

The real desktop image (images issue) brings Xvnc and its own asci-set-vnc-password; this
checks the launcher's half: the password reaches the command on stdin, the caller gets the
address on the session network, and the password is in no record and no log line.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from asci_core.launcher.errors import Conflict, SessionNotFound
from asci_core.launcher.vnc_password import PASSWORD_COMMAND
from tests.conftest import LABELS
from tests.integration.launcher_support import build_launcher, make_data, tiny_environment

pytestmark = pytest.mark.integration

DOCKERFILE = f"""FROM asci/tiny:latest
RUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\nread -r p\\nprintf %%s "$p" > /tmp/vnc-password\\n' > {PASSWORD_COMMAND} \\
 && chmod 755 {PASSWORD_COMMAND}
"""


@pytest.fixture
def password_image(docker_client, unique):
    tag = f"{unique('img')}:1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, labels=LABELS)
    yield tag
    docker_client.images.remove(image.id, force=True)


def test_connect_sets_a_fresh_password_through_stdin(stack, docker_client, unique, tmp_path: Path, password_image,
                                                     caplog):
    scope = {**LABELS, "asci.test.case": unique()}
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    env = tiny_environment(data, image=password_image)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env])
    caplog.set_level(logging.DEBUG)
    try:
        record = launcher.create("alice", "tiny")
        first = launcher.connect(record.id, as_user="alice")
        second = launcher.connect(record.id, as_user="alice")
        container = docker_client.containers.get(record.container_id)
        network = container.attrs["NetworkSettings"]["Networks"][launcher.settings.session_network]
        assert (first.node, first.address, first.port) == ("local", network["IPAddress"], 5901)
        secret = second.password.reveal()
        assert len(secret) == 8 and secret != first.password.reveal()
        assert container.exec_run(["cat", "/tmp/vnc-password"]).output.decode() == secret
        assert secret not in repr(second) and secret not in caplog.text
        for path in tmp_path.glob("sessions.sqlite*"):
            assert secret.encode() not in path.read_bytes()
        with pytest.raises(SessionNotFound):
            launcher.connect(record.id, as_user="bob")
        launcher.stop(record.id)
        with pytest.raises(Conflict, match="stopped, not ready"):
            launcher.connect(record.id)
    finally:
        launcher.close()
