"""own_container_id reads the engine's bind mounts from mountinfo: inside a container its id, on the host None."""
from __future__ import annotations

from asci_core.services.self_container import own_container_id

ID = "7f8272f765706350ba7f90af60196015bfd8a9910b9ccdac9076858f0594ffab"
INSIDE = (
    "790 700 0:120 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X\n"
    f"808 790 254:0 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw\n"
    f"809 790 254:0 /data/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n")
HOST = ("22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "30 22 0:25 / /var/lib/docker/containers rw - tmpfs tmpfs rw\n")


def test_inside_a_container_its_id_is_found(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(INSIDE)
    assert own_container_id(str(path)) == ID


def test_on_the_host_or_without_mountinfo_there_is_none(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(HOST)
    assert own_container_id(str(path)) is None
    assert own_container_id(str(tmp_path / "missing")) is None
