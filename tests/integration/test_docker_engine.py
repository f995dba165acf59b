"""The engine the stack started builds and runs images made from the bootstrapped base."""
from __future__ import annotations

import io

from tests.conftest import LABELS


def test_build_from_bootstrapped_debian_and_run(docker_client, unique, stack):
    base = stack.config.stack.base_image.name
    dockerfile = (
        f"FROM {base}\n"
        "RUN . /etc/os-release && echo \"built on $PRETTY_NAME\" > /greeting\n"
        'CMD ["cat", "/greeting"]\n'
    )
    tag = f"{unique('img')}:1"
    image, build_log = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True,
                                                  labels=LABELS)
    try:
        assert any("Successfully built" in line.get("stream", "") for line in build_log)
        output = docker_client.containers.run(tag, remove=True, labels=LABELS)
        assert output.decode().strip() == "built on Debian GNU/Linux 12 (bookworm)"
    finally:
        docker_client.images.remove(image.id, force=True)


def test_base_image_was_not_pulled_but_imported(docker_client, stack):
    image = docker_client.images.get(stack.config.stack.base_image.name)
    # `docker import` leaves no RepoDigests: an image pulled from a hub would carry one.
    assert image.attrs["RepoDigests"] == []
    assert image.attrs["Config"]["Cmd"] == ["/bin/bash"]
    assert "LANG=C.UTF-8" in image.attrs["Config"]["Env"]
