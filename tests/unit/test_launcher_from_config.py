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
        assert launcher.list() == [] and [e.name for e in launcher.environments()] == ["desktop-base"]
    finally:
        launcher.close()


def test_configured_nodes_replace_the_local_default():
    nodes = [NodeSettings(name="node1", url="unix:///run/node1.sock")]
    assert default_nodes(nodes, "/var/run/docker.sock") == nodes


def test_backend_swarm_builds_a_swarm_launcher_that_reaches_the_manager_through_its_pool(tmp_path: Path):
    from asci_core.launcher.settings import SWARM_MANAGER
    from asci_core.launcher.swarm import SwarmLauncher

    config = parse_config(f"stack:\n  state_dir: {tmp_path}\nlauncher:\n  backend: swarm\n"
                          f"  swarm: {{manager: 'unix:///run/m.sock', timeout: 3}}\n"
                          f"  nodes: [{{name: node1, url: 'unix:///run/node1.sock'}}]\n")
    launcher = Launcher.from_config(config)
    try:
        assert isinstance(launcher, SwarmLauncher)
        assert launcher.pool.names() == ["node1", SWARM_MANAGER]
        assert launcher.pool.timeout_for(SWARM_MANAGER) == 3.0
    finally:
        launcher.close()
