from __future__ import annotations

from pathlib import Path

from asci_core.config import parse_config
from asci_core.launcher.nodes import default_nodes
from asci_core.launcher.sessions import Launcher
from asci_core.launcher.settings import NodeSettings


def test_defaults_run_on_the_local_engine_with_state_under_the_state_dir(tmp_path: Path):
    config = parse_config(f"stack:\n  state_dir: {tmp_path}\n  docker: {{socket: /run/x/docker.sock}}\n")
    launcher = Launcher.from_config(config)
    try:
        assert launcher.pool.names() == ["local"]
        assert launcher.pool.nodes["local"].settings.url == "unix:///run/x/docker.sock"
        assert launcher.store.path == tmp_path / "launcher/sessions.sqlite" and launcher.store.path.exists()
        assert launcher.directory.path == tmp_path / "launcher/users.yaml"
        assert launcher.list() == [] and launcher.environments() == []
    finally:
        launcher.close()


def test_configured_nodes_replace_the_local_default():
    nodes = [NodeSettings(name="node1", url="unix:///run/node1.sock")]
    assert default_nodes(nodes, "/var/run/docker.sock") == nodes
