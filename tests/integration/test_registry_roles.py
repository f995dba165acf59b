"""Roles and users on a registry of our own (token auth), and one clear line for each bad input.

A sandbox registry (own state dir and port) is used so users can be added and
removed without touching the registry the other suites share.
"""
from __future__ import annotations

import datetime as _dt
import io
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from asci_core.config import Secret
from registry.client import Denied, NotFound, RegistryClient, Unauthorized
from registry.service import RegistryAccess
from tests.conftest import LABELS, free_port
from tests.support.sandbox import Sandbox

ASCI = str(Path(sys.executable).with_name("asci"))


def asci(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ASCI, "-c", str(config), "--log-level", "warning", "registry", *args],
                          capture_output=True, text=True, timeout=120, input=stdin)


@pytest.fixture(scope="module")
def sandbox(stack, tmp_path_factory):
    sb = Sandbox(stack.config, tmp_path_factory.mktemp("registry-roles")).start()
    yield sb
    sb.stop()


def as_user(sb: Sandbox, user: str, password: str) -> RegistryAccess:
    return RegistryAccess(sb.access.url, sb.address, user, Secret(password, "test"))


def push(docker_client, ref: str, auth_config) -> list[dict]:
    repo, tag = ref.rsplit(":", 1)
    return list(docker_client.api.push(repo, tag, stream=True, decode=True, auth_config=auth_config))


def build(docker_client, stack, ref: str, content: str) -> None:
    dockerfile = f"FROM {stack.config.stack.base_image.tiny_name}\nRUN echo '{content}' > /content\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True, labels=LABELS)


def test_no_credentials_means_401_and_nothing_arrives(sandbox, docker_client, stack, unique):
    resp = requests.get(f"{sandbox.access.url}/v2/_catalog", timeout=5)
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")
    realm = resp.headers["WWW-Authenticate"].split('"')[1]
    assert requests.get(realm, params={"scope": "registry:catalog:*"}, timeout=5).status_code == 401

    repo = unique("anon")
    ref = f"{sandbox.address}/{repo}:v1"
    build(docker_client, stack, ref, "anonymous")
    try:
        errors = [line["error"] for line in push(docker_client, ref, None) if "error" in line]
        assert errors and "unauthorized" in errors[-1]
    finally:
        docker_client.images.remove(ref, force=True)
    with pytest.raises(NotFound):
        sandbox.client().tags(repo)


def test_roles_pull_push_admin_are_enforced(sandbox, docker_client, stack, unique):
    puller, pusher = unique("puller")[-20:], unique("pusher")[-20:]
    added = asci(sandbox.config_path, "users", "add", puller, "--role", "pull")
    assert added.returncode == 0, added.stderr
    pull_password = added.stdout.strip().splitlines()[-1]
    push_password = "chosen-push-password-" + puller[-8:]
    added = asci(sandbox.config_path, "users", "add", pusher, "--role", "push", "--password-stdin",
                 stdin=push_password + "\n")
    assert added.returncode == 0 and push_password not in added.stdout
    listed = asci(sandbox.config_path, "users", "list")
    assert f"{puller}\tpull" in listed.stdout and f"{pusher}\tpush" in listed.stdout
    assert pull_password not in listed.stdout

    repo = unique("roles")
    ref = f"{sandbox.address}/{repo}:v1"
    build(docker_client, stack, ref, "roles")
    try:
        # push role: the engine pushes.
        lines = push(docker_client, ref, {"username": pusher, "password": push_password})
        assert not [line for line in lines if "error" in line]
        digest = next(line["aux"]["Digest"] for line in lines if "aux" in line)

        # pull role: the engine pulls, but a push is refused, by the engine and by the API.
        docker_client.images.remove(ref, force=True)
        pulled = docker_client.images.pull(f"{sandbox.address}/{repo}", tag="v1",
                                           auth_config={"username": puller, "password": pull_password})
        assert f"{sandbox.address}/{repo}@{digest}" in pulled.attrs["RepoDigests"]
        docker_client.api.tag(ref, f"{sandbox.address}/{repo}", "v2")
        errors = [line["error"] for line in push(docker_client, f"{sandbox.address}/{repo}:v2",
                                                 {"username": puller, "password": pull_password})
                  if "error" in line]
        assert errors, "a pull user could push"
        pull_client = RegistryClient(as_user(sandbox, puller, pull_password))
        manifest = pull_client.get_manifest(repo, "v1")
        with pytest.raises(Denied):
            pull_client.put_manifest(repo, "v3", manifest)
        assert pull_client.tags(repo) == ["v1"]

        # push role may not delete; admin may.
        with pytest.raises(Denied):
            RegistryClient(as_user(sandbox, pusher, push_password)).delete_manifest(repo, digest)
        admin = sandbox.client()
        admin.delete_manifest(repo, digest)
        with pytest.raises(NotFound):
            admin.manifest_digest(repo, "v1")
    finally:
        for tag in ("v1", "v2"):
            try:
                docker_client.images.remove(f"{sandbox.address}/{repo}:{tag}", force=True)
            except Exception:
                pass

    # Removing a user takes effect at once: no restart, no token for them any more.
    assert asci(sandbox.config_path, "users", "remove", puller).returncode == 0
    with pytest.raises(Unauthorized):
        RegistryClient(as_user(sandbox, puller, pull_password)).tags(repo)

    # Passwords are never logged: not by the token service, not by the registry.
    logged = sandbox.log_path.read_text()
    assert pull_password not in logged and push_password not in logged
    assert puller in logged  # the token service did log who asked


def one_line_failure(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asci registry: "), result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_input_gives_one_clear_line_and_deletes_nothing(sandbox, tmp_path, unique):
    admin = sandbox.client()
    repo = unique("bad")
    manifest = _tiny_manifest(admin, repo)
    for tag in ("v1.0.0", "v1.0.1", "nightly"):
        admin.put_manifest(repo, tag, manifest)
    policy = {"retention": [{"repository": repo, "keep_last": 1, "keep_tags": []}]}
    config = sandbox.variant("bad-input.yaml", policy)

    one_line_failure(asci(config, "tags", f"{repo}-unknown"), 1, "NAME_UNKNOWN", "not known")
    one_line_failure(asci(config, "digest", f"{repo}:v9"), 1, "MANIFEST_UNKNOWN")
    one_line_failure(asci(config, "digest", "Not A Repo:v1"), 2, "not a valid repository name")
    one_line_failure(asci(config, "promote", f"{repo}:v1.0.0", f"{repo}:-bad"), 2, "not a valid tag")
    one_line_failure(asci(config, "promote", f"{repo}:nope", f"{repo}-copy:v1"), 1, "MANIFEST_UNKNOWN")
    one_line_failure(asci(config, "retain", "Bad/Repo"), 2, "not a valid repository name")

    down = sandbox.write_config({**sandbox.settings, "registry": policy, "stack": {
        **sandbox.settings["stack"],
        "registry": {"managed": False, "url": f"http://127.0.0.1:{free_port()}"}}}, "down.yaml")
    one_line_failure(asci(down, "ls"), 1, "does not answer")
    one_line_failure(asci(down, "retain"), 1, "does not answer")

    wrong = sandbox.write_config({**sandbox.settings, "registry": policy, "stack": {
        **sandbox.settings["stack"],
        "registry": {"managed": False, "url": sandbox.access.url, "username": "asci-admin",
                     "password": "wrong-password"}}}, "wrong.yaml")
    one_line_failure(asci(wrong, "ls"), 1, "rejected", "wrong or missing password")
    one_line_failure(asci(wrong, "retain"), 1, "rejected")

    # A registry this state dir did not start is never restarted for garbage collection.
    foreign = sandbox.write_config({**sandbox.settings, "registry": policy, "stack": {
        **sandbox.settings["stack"], "state_dir": str(tmp_path / "other-state")}}, "foreign.yaml")
    one_line_failure(asci(foreign, "gc"), 1, "was not started by this ASCI state dir")

    assert sorted(admin.tags(repo)) == ["nightly", "v1.0.0", "v1.0.1"]  # nothing deleted by any of it
    with pytest.raises(NotFound):
        admin.tags(f"{repo}-copy")


def _tiny_manifest(client: RegistryClient, repo: str):
    import hashlib
    import json

    from registry.client import DOCKER_MANIFEST, Manifest

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
        "digest": client.upload_blob(repo, config)}}).encode()
    return Manifest(repo, "sha256:" + hashlib.sha256(body).hexdigest(), DOCKER_MANIFEST, body)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_registry_and_token_service_over_https(stack, tmp_path, unique):
    cert, key = _self_signed(tmp_path)
    with Sandbox(stack.config, tmp_path / "tls", registry={
            "tls": {"certificate": str(cert), "key": str(key), "ca_bundle": str(cert)}}) as sb:
        access = sb.access
        assert access.url.startswith("https://")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{access.url}/v2/", timeout=5)  # not trusted without the CA bundle
        resp = requests.get(f"{access.url}/v2/", timeout=5, verify=str(cert))
        assert resp.status_code == 401 and 'realm="https://127.0.0.1:' in resp.headers["WWW-Authenticate"]
        client = sb.client()
        repo = unique("tls")
        client.put_manifest(repo, "v1", _tiny_manifest(client, repo))
        assert client.tags(repo) == ["v1"] and repo in client.catalog()
