from __future__ import annotations

from pathlib import Path

import pytest

from asci_core.config import ConfigError, parse_config
from asci_core.launcher.settings import EnvironmentSettings

GOOD = """
launcher:
  placement: pack
  max_sessions_per_user: 3
  cpu_overcommit: 2
  environments:
    - name: desktop-base
      title: Base desktop
      image: registry.facility.example:5000/desktops/base:1.4
      cpus: 2
      memory: 4g
      shm_size: 512m
      mounts:
        - {source: "/data/{user}", target: "/home/{user}/data", read_only: false}
        - {source: /opt/software, target: /opt/software}
      env: {LANG: C.UTF-8}
      allowed_groups: [beamline-i03]
      node_labels: {beamline: i03}
  nodes:
    - {name: node1, url: "unix:///run/node1.sock", cpus: 8, memory: 32g, labels: {beamline: i03}}
    - {name: node2, url: "tcp://127.0.0.1:2375", gpus: 2}
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "asci.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_full_section_loads_with_sizes_parsed():
    launcher = parse_config(GOOD).launcher
    env = launcher.environment("desktop-base")
    assert env.memory_bytes == 4 * 1024 ** 3 and env.shm_bytes == 512 * 1024 ** 2
    assert env.mounts[0].read_only is False and env.mounts[1].read_only is True
    assert env.allows("bob", ["beamline-i03"]) and not env.allows("bob", ["other"])
    assert launcher.placement == "pack" and launcher.cpu_overcommit == 2.0
    assert launcher.nodes[0].memory_bytes == 32 * 1024 ** 3 and launcher.nodes[1].gpus == 2


def test_defaults_need_no_launcher_section():
    launcher = parse_config("").launcher
    assert launcher.placement == "spread" and launcher.nodes == []
    # The one environment a newcomer can launch, once `asci images build desktop-base --push` ran.
    [env] = launcher.environments
    assert (env.name, env.title, env.image) == ("desktop-base", "Debian desktop", "{registry}/bl/desktop-base:latest")
    assert (env.cpus, env.memory, env.shm_size, env.account) == (2.0, "2g", "256m", "image")
    assert env.allows("anyone", [])


def test_environment_without_lists_allows_every_known_user():
    env = EnvironmentSettings(name="x", image="asci/tiny:latest")
    assert env.allows("anyone", []) and env.display_title == "x"
    assert not EnvironmentSettings(name="x", image="asci/tiny:latest", allowed_users=["bob"]).allows("anyone", [])


@pytest.mark.parametrize("old,new,key,words", [
    ("memory: 4g", "memory: 4 gigs", "launcher.environments[0].memory", "expected a size"),
    ("shm_size: 512m", "shm_size: -1m", "launcher.environments[0].shm_size", "expected a size"),
    ('"/data/{user}"', '"/data/../{user}"', "launcher.environments[0].mounts[0].source", "'..'"),
    ('"/data/{user}"', '"/{user}"', "launcher.environments[0].mounts[0].source", "first directory must be fixed"),
    ('"/data/{user}"', '"/data/{home}"', "launcher.environments[0].mounts[0].source", "unknown placeholder {home}"),
    ('"/data/{user}"', '"data/{user}"', "launcher.environments[0].mounts[0].source", "absolute"),
    ('"/home/{user}/data"', '"/proc"', "launcher.environments[0].mounts[0].target", "not allowed"),
    ("target: /opt/software", 'target: "/home/{user}/data"', "launcher.environments[0].mounts[1].target",
     "mounted twice"),
    ("registry.facility.example:5000/desktops/base:1.4", "Desktops/Base", "launcher.environments[0].image",
     "image reference"),
    ("{LANG: C.UTF-8}", "{1BAD: x}", "launcher.environments[0].env.1BAD", "environment variable"),
    ("allowed_groups: [beamline-i03]", "allowed_groups: ['Bad Group']", "launcher.environments[0].allowed_groups[0]",
     "group name"),
    ("cpus: 2", "cpus: 0", "launcher.environments[0].cpus", "above 0"),
    ("placement: pack", "placement: random", "launcher.placement", "spread, pack"),
    ("cpu_overcommit: 2", "cpu_overcommit: 100", "launcher.cpu_overcommit", "0.1 to 16"),
    ('"unix:///run/node1.sock"', '"http://node1:2375"', "launcher.nodes[0].url", "unix:///"),
    ('"tcp://127.0.0.1:2375"', '"tcp://node2.site:2376"', "launcher.nodes[1].tls", "needs TLS"),
    ("memory: 32g", "memory: lots", "launcher.nodes[0].memory", "expected a size"),
    ("name: node1", "name: node2", "launcher.nodes[1].name", "defined twice"),
])
def test_mistakes_are_one_line_naming_the_key(old, new, key, words):
    assert old in GOOD
    message = error_of(GOOD.replace(old, new, 1))
    assert f"asci.yaml: {key}: " in message and words in message


def test_capabilities_outside_the_desktop_set_are_refused():
    text = GOOD.replace("env: {LANG: C.UTF-8}", "capabilities: [SETUID, SYS_ADMIN]")
    assert "launcher.environments[0].capabilities[1]: 'SYS_ADMIN' is not allowed" in error_of(text)


def test_tls_files_must_exist(tmp_path: Path):
    for name in ("ca.pem", "cert.pem"):
        (tmp_path / name).write_text("x")
    text = GOOD.replace('url: "tcp://127.0.0.1:2375"', f'url: "tcp://node2.site:2376", tls: {{ca_cert: {tmp_path}/ca.pem, '
                                                          f'client_cert: {tmp_path}/cert.pem, client_key: {tmp_path}/key.pem}}')
    assert f"launcher.nodes[1].tls.client_key: file {tmp_path}/key.pem does not exist" in error_of(text)
    (tmp_path / "key.pem").write_text("x")
    assert parse_config(text).launcher.nodes[1].tls.client_key == tmp_path / "key.pem"


def test_duplicate_environment_names_are_refused():
    text = GOOD.replace("  nodes:", "    - {name: desktop-base, image: asci/tiny:latest}\n  nodes:")
    assert "launcher.environments[1].name: environment 'desktop-base' is defined twice" in error_of(text)


def test_the_commented_example_in_asci_example_yaml_loads(tmp_path: Path):
    text = (Path(__file__).resolve().parents[2] / "asci.example.yaml").read_text()
    block = text[text.index("# launcher:"):]
    lines = [line[2:] for line in block.splitlines() if line.startswith("# ") or line == "#"]
    uncommented = "\n".join(line for line in lines if not line.lstrip().startswith("# "))
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    uncommented = uncommented.replace("/etc/asci/docker", str(tmp_path))
    launcher = parse_config(uncommented).launcher
    assert [e.name for e in launcher.environments] == ["desktop-base"]
    assert [n.name for n in launcher.nodes] == ["node1", "gpu1"] and launcher.nodes[1].tls is not None


SWARM = """
launcher:
  backend: swarm
  swarm: {manager: "unix:///run/swarm-manager.sock", start_timeout: 20}
  nodes:
    - {name: node1, url: "unix:///run/node1.sock", cpus: 8, memory: 32g}
"""


def test_the_engines_backend_is_the_default_and_swarm_is_chosen_by_configuration():
    assert parse_config("").launcher.backend == "engines"
    launcher = parse_config(SWARM).launcher
    assert launcher.backend == "swarm" and launcher.swarm.manager == "unix:///run/swarm-manager.sock"
    assert launcher.swarm.start_timeout == 20.0


@pytest.mark.parametrize("old,new,key,words", [
    ("backend: swarm", "backend: kubernetes", "launcher.backend", "engines, swarm"),
    ('  swarm: {manager: "unix:///run/swarm-manager.sock", start_timeout: 20}\n', "", "launcher.swarm",
     "needs the manager's address"),
    ('"unix:///run/swarm-manager.sock"', '"tcp://manager.site:2376"', "launcher.swarm.tls", "needs TLS"),
    ('"unix:///run/swarm-manager.sock"', '"manager"', "launcher.swarm.manager", "unix:///"),
    ("name: node1", "name: swarm-manager", "launcher.nodes[0].name", "names the Swarm manager"),
    ("start_timeout: 20", "start_timeout: 0", "launcher.swarm.start_timeout", "above 0"),
])
def test_swarm_mistakes_are_one_line_naming_the_key(old, new, key, words):
    assert old in SWARM
    message = error_of(SWARM.replace(old, new, 1))
    assert f"asci.yaml: {key}: " in message and words in message


@pytest.mark.parametrize("node1_extra,key,words", [
    ("vnc_address: published", "launcher.nodes[0].publish_address", "needs the node's IP address"),
    ("vnc_address: published, publish_address: node1.site", "launcher.nodes[0].publish_address",
     "expected an IP address"),
    ("vnc_address: published, publish_address: 0.0.0.0", "launcher.nodes[0].publish_address", "not all of them"),
    ("publish_address: 10.0.0.12", "launcher.nodes[0].publish_address", "vnc_address: published only"),
    ("vnc_address: nat", "launcher.nodes[0].vnc_address", "bridge, published"),
])
def test_node_vnc_address_mistakes_are_one_line_naming_the_key(node1_extra, key, words):
    text = GOOD.replace("labels: {beamline: i03}}", f"labels: {{beamline: i03}}, {node1_extra}}}")
    message = error_of(text)
    assert f"asci.yaml: {key}" in message and words in message


def test_a_negative_usage_interval_is_refused():
    message = error_of(GOOD.replace("placement: pack", "placement: pack\n  usage_interval: -1"))
    assert "asci.yaml: launcher.usage_interval: " in message and "0 to 3600" in message


def test_a_node_can_publish_vnc_on_its_own_address_and_usage_sampling_can_be_off():
    text = GOOD.replace("labels: {beamline: i03}}", "labels: {beamline: i03}, vnc_address: published, "
                                                    "publish_address: 10.0.0.12}")
    config = parse_config(text.replace("placement: pack", "placement: pack\n  usage_interval: 0"), "asci.yaml")
    node1, node2 = config.launcher.nodes
    assert (node1.vnc_address, node1.publish_address) == ("published", "10.0.0.12")
    assert (node2.vnc_address, node2.publish_address) == ("bridge", None)
    assert config.launcher.usage_interval == 0
