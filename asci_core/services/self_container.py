"""Which container this process runs in, if any: `asci services` must not replace the container it runs in.

The engine bind-mounts each container's /etc/hostname (and hosts, resolv.conf) from
DATA_ROOT/containers/<id>/, and /proc/self/mountinfo shows that source path whatever the cgroup
version or namespace, so the id is read from there. A process on the host has no such mount.
"""
from __future__ import annotations

import re

MOUNTINFO = "/proc/self/mountinfo"
_ENGINE_MOUNT = re.compile(r" \S*/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf) /etc/\S+ ")


def own_container_id(mountinfo: str = MOUNTINFO) -> str | None:
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                found = _ENGINE_MOUNT.search(line)
                if found:
                    return found.group(1)
    except OSError:
        return None
    return None
