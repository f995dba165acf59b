"""Where the proxy reaches a session: the bridge address, or the port the engine published on the node."""
from __future__ import annotations

from asci_core.launcher.settings import NodeSettings
from asci_core.launcher.vnc_endpoint import endpoint, publish_kwargs

BRIDGE = NodeSettings(name="local", url="unix:///var/run/docker.sock")
PUBLISHED = NodeSettings(name="node1", url="tcp://127.0.0.1:2375", vnc_address="published",
                         publish_address="10.0.0.12")
ATTRS = {"NetworkSettings": {
    "Networks": {"asci-sessions": {"IPAddress": "172.20.0.5"}},
    "Ports": {"5901/tcp": [{"HostIp": "10.0.0.12", "HostPort": "49153"}]}}}


def test_the_local_node_hands_out_the_bridge_address_and_publishes_nothing():
    assert publish_kwargs(BRIDGE) == {}
    assert endpoint(BRIDGE, ATTRS, "asci-sessions") == ("172.20.0.5", 5901)
    assert endpoint(BRIDGE, ATTRS, "other") == ("", 0)


def test_a_publishing_node_binds_an_ephemeral_port_on_its_address_only():
    assert publish_kwargs(PUBLISHED) == {"ports": {"5901/tcp": ("10.0.0.12", None)}}
    assert endpoint(PUBLISHED, ATTRS, "asci-sessions") == ("10.0.0.12", 49153)
    # Not published (e.g. created before the setting changed): no address rather than the bridge one.
    unpublished = {"NetworkSettings": {**ATTRS["NetworkSettings"], "Ports": {"5901/tcp": None}}}
    assert endpoint(PUBLISHED, unpublished, "asci-sessions") == ("", 0)
