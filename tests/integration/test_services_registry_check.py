"""Tags pushed by others (not built by this autobuild) are found by `asci serve`'s periodic registry check;
a service without published ports runs old and new at once during the roll (start-first, no gap)."""
from __future__ import annotations

import io
import json
import subprocess
import time
import uuid

import pytest
import yaml

from tests.conftest import LABELS, free_port
from tests.integration.autobuild_support import ASCI, Serve, autobuild_config
from tests.integration.services_support import remove_service

TOKEN = uuid.uuid4().hex[:8]
IMAGE = f"asci-test/svc-check-{TOKEN}"
NAME = f"checked_{TOKEN}"


def push(stack, docker_client, tag: str) -> None:
    ref = f"{stack.registry.address}/{IMAGE}:{tag}"
    dockerfile = (f"FROM {stack.config.stack.base_image.tiny_name}\n"
                  f"RUN mkdir /www && echo {tag} > /www/version && touch /www/healthz\n"
                  'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True, labels=LABELS)
    lines = docker_client.api.push(ref.rsplit(":", 1)[0], tag, stream=True, decode=True,
                                   auth_config=stack.registry.auth_config())
    assert not [line for line in lines if "error" in line]


@pytest.fixture
def serve(stack, tmp_path, docker_client):
    port = free_port()
    path = autobuild_config(tmp_path / "asci.yaml", config=stack.config, workdir=tmp_path / "work",
                            git_root=tmp_path / "git", port=port, repositories=[])
    data = yaml.safe_load(path.read_text())
    data["services"] = {"workdir": str(tmp_path / "services"), "check_interval": 0.5, "definitions": [{
        "name": NAME, "repository": IMAGE, "tag": "v2.0.0", "follow": "patch",
        "health": {"http_path": "/healthz", "port": 8080, "interval": 0.2, "wait": 10}}]}
    path.write_text(yaml.safe_dump(data))
    push(stack, docker_client, "v2.0.0")
    out = subprocess.run([ASCI, "-c", str(path), "services", "deploy"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    server = Serve(path, port, tmp_path / "serve.log").start()
    yield path
    server.stop()
    remove_service(docker_client, NAME)


def test_the_periodic_check_rolls_to_a_tag_pushed_by_others(serve, stack, docker_client):
    push(stack, docker_client, "v2.0.1")
    push(stack, docker_client, "v2.1.0")  # outside the patch policy
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run([ASCI, "-c", str(serve), "services", "history", NAME, "--json"],
                             capture_output=True, text=True, timeout=60)
        rolls = [r for r in json.loads(out.stdout) if r["result"] != "running"]
        if rolls and rolls[0]["to_tag"] == "v2.0.1":
            break
        assert time.monotonic() < deadline, f"no roll to v2.0.1: {rolls}"
        time.sleep(0.3)
    assert (rolls[0]["result"], rolls[0]["trigger"]) == ("succeeded", "registry")
    (left,) = docker_client.containers.list(all=True, filters={"label": f"asci.service={NAME}"})
    assert left.labels["asci.service-tag"] == "v2.0.1" and left.status == "running"
    assert left.exec_run(["cat", "/www/version"]).output.strip() == b"v2.0.1"
    status = json.loads(subprocess.run([ASCI, "-c", str(serve), "services", "status", "--json"],
                                       capture_output=True, text=True, timeout=60).stdout)
    assert (status[0]["tag"], status[0]["health"]) == ("v2.0.1", "healthy")
    assert "v2.1.0" not in [r["to_tag"] for r in rolls]
