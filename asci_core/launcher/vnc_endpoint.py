"""Where the proxy reaches a session's VNC server, by the node's `vnc_address` setting.

`bridge` (the default): the container's address on the session network. Only the
machine the engine runs on has a route to it, so it suits the local node and a
proxy on the same host. `published`: the engine publishes the VNC port on the
node's `publish_address` with an ephemeral host port, bound to that address alone
(not 0.0.0.0: the session must not appear on every interface of the node), and the
proxy connects to address:port from wherever it runs. The engine picks the port, so
sessions never collide, and it is read back from the container when connecting.
"""
from __future__ import annotations

from typing import Any, Mapping

from .settings import NodeSettings

VNC_PORT = 5901
PUBLISHED = "published"
_PORT_KEY = f"{VNC_PORT}/tcp"


def publish_kwargs(node: NodeSettings) -> dict[str, Any]:
    """What container creation adds on NODE: a port binding when the node publishes VNC."""
    if node.vnc_address != PUBLISHED:
        return {}
    return {"ports": {_PORT_KEY: (node.publish_address, None)}}


def endpoint(node: NodeSettings, attrs: Mapping[str, Any], network: str) -> tuple[str, int]:
    """(address, port) for the proxy from the container's inspect ATTRS; ("", 0) when it has none."""
    settings = attrs.get("NetworkSettings") or {}
    if node.vnc_address == PUBLISHED:
        for binding in (settings.get("Ports") or {}).get(_PORT_KEY) or []:
            if binding.get("HostPort"):
                return binding.get("HostIp") or node.publish_address or "", int(binding["HostPort"])
        return "", 0
    address = ((settings.get("Networks") or {}).get(network) or {}).get("IPAddress", "")
    return address, VNC_PORT if address else 0
