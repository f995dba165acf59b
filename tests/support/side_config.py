"""Side configurations: a second ASCI configuration that reuses the shared stack's services."""
from __future__ import annotations

from asci_core.config import Config


def shared_services(config: Config) -> dict[str, object]:
    """The `stack:` settings a second configuration needs to reach CONFIG's engine, registry,
    search engine and base images: the start of a side configuration (its own state_dir, ports)."""
    s = config.stack
    return {
        "docker": {"socket": str(s.docker.socket)},
        "registry": {"host": s.registry.host, "port": s.registry.port},
        "search": {"url": s.search.url},
        "base_image": {"name": s.base_image.name, "tiny_name": s.base_image.tiny_name},
    }
