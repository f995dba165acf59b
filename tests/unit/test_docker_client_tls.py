"""Engine clients over TLS verify against the engine's own CA, whatever the environment says."""
from __future__ import annotations

from asci_core.stack.docker_engine import docker_client


def test_a_tls_client_ignores_the_environments_ca_bundle_and_proxies(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = docker_client("tcp://127.0.0.1:2376", timeout=5, version="1.41", tls=True)
    try:
        assert client.api.trust_env is False
        settings = client.api.merge_environment_settings("https://127.0.0.1:2376/_ping", {}, None, None, None)
        assert settings["verify"] is not None and settings["verify"] != "/etc/ssl/certs/ca-certificates.crt"
    finally:
        client.close()


def test_a_local_socket_client_is_left_as_it_is():
    client = docker_client("/run/docker.sock", timeout=5, version="1.41")
    try:
        assert client.api.trust_env is True
    finally:
        client.close()
