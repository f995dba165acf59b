"""The facility registry (Docker Distribution, Debian `docker-registry`) as a stack part.

Managed mode writes the registry's YAML config under STATE_DIR/registry and
runs it on loopback behind Docker token auth: `registry.supervisor` serves the
token endpoint (bcrypt htpasswd + per-user roles) and runs `docker-registry
serve` as its child. The generated admin's password stays in a 0600 file there;
nothing prints it. Unmanaged mode points at a site registry.
"""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests
import yaml

from asci_core.config import Config
from asci_core.config_base import Secret
from asci_core.stack.part import Part, Probe, Started, StartError
from registry.tokens import ensure_signing_key
from registry.users import ADMIN_USER, UserStore, write_private

__all__ = ["ADMIN_USER", "RegistryAccess", "RegistryPart", "registry_access", "registry_dir", "write_server_config"]


@dataclass(frozen=True)
class RegistryAccess:
    """How ASCI code reaches the registry: `address` is what image names start with."""

    url: str
    address: str
    username: str | None
    password: Secret | None
    ca_bundle: Path | None = None  # when the registry's TLS certificate is not in the system store

    def auth_config(self) -> dict[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password.reveal()}

    def auth(self) -> tuple[str, str] | None:
        cfg = self.auth_config()
        return None if cfg is None else (cfg["username"], cfg["password"])

    @property
    def verify(self) -> bool | str:
        return str(self.ca_bundle) if self.ca_bundle else True


def registry_dir(config: Config) -> Path:
    return config.stack.state_dir / "registry"


def _scheme(config: Config) -> str:
    return "https" if config.registry.tls.enabled else "http"


def registry_access(config: Config) -> RegistryAccess:
    settings = config.stack.registry
    ca = config.registry.tls.ca_bundle
    if not settings.managed:
        if not settings.url:
            raise StartError("stack.registry.url is required when stack.registry.managed is false")
        parsed = urlparse(settings.url)
        return RegistryAccess(settings.url.rstrip("/"), parsed.netloc, settings.username, settings.password, ca)
    address = f"{settings.host}:{settings.port}"
    creds = _read_credentials(registry_dir(config) / "credentials.json")
    user, password = (creds if creds else (None, None))
    return RegistryAccess(f"{_scheme(config)}://{address}", address, user, password, ca)


def _read_credentials(path: Path) -> tuple[str, Secret] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StartError(f"registry credentials {path} unreadable ({exc})") from None
    return data["username"], Secret(data["password"], f"file:{path}")


def ensure_credentials(directory: Path) -> None:
    """The generated admin: a random password, bcrypt in htpasswd, plain in a 0600 file (see UserStore.ensure_admin)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    UserStore(directory).ensure_admin(directory / "credentials.json")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def token_realm(config: Config, token_port: int) -> str:
    auth = config.registry.auth
    if auth.token_realm:
        return auth.token_realm
    return f"{_scheme(config)}://{config.stack.registry.host}:{token_port}/token"


def write_server_config(config: Config, token_port: int, read_only: bool = False) -> Path:
    directory = registry_dir(config)
    settings = config.stack.registry
    auth = config.registry.auth
    tls = config.registry.tls
    ensure_credentials(directory)
    ensure_signing_key(directory / "token.key", directory / "token.crt", auth.issuer)
    secret_file = directory / "http-secret"
    if not secret_file.exists():
        write_private(secret_file, secrets.token_hex(32))
    storage: dict[str, object] = {
        "filesystem": {"rootdirectory": str(directory / "data")},
        "delete": {"enabled": True},
        "cache": {"blobdescriptor": "inmemory"},
    }
    if read_only:
        # Pulls keep working while garbage collection runs; pushes and deletes are refused.
        storage["maintenance"] = {"readonly": {"enabled": True}}
    http: dict[str, object] = {
        "addr": f"{settings.host}:{settings.port}",
        "secret": secret_file.read_text().strip(),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls.enabled:
        http["tls"] = {"certificate": str(tls.certificate), "key": str(tls.key)}
    server = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "fields": {"service": "registry"}},
        "storage": storage,
        "http": http,
        "auth": {"token": {
            "realm": token_realm(config, token_port),
            "service": auth.service,
            "issuer": auth.issuer,
            "rootcertbundle": str(directory / "token.crt"),
        }},
    }
    path = directory / "config.yml"
    write_private(path, yaml.safe_dump(server, sort_keys=False))
    return path


def registry_binary() -> str:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise StartError("docker-registry is not installed (Debian package docker-registry; run scripts/setup.sh)")
    return binary


class RegistryPart(Part):
    name = "registry"
    order = 30

    def __init__(self, config: Config, read_only: bool = False):
        super().__init__(config)
        self.read_only = read_only

    @property
    def managed(self) -> bool:
        return self.config.stack.registry.managed

    @property
    def address(self) -> str:
        s = self.config.stack.registry
        return f"{_scheme(self.config)}://{s.host}:{s.port}" if s.managed else (s.url or "(stack.registry.url not set)")

    @property
    def start_timeout(self) -> float:
        return self.config.stack.registry.start_timeout

    def probe(self) -> Probe:
        if not self.managed and not self.config.stack.registry.url:
            return Probe(False, detail="stack.registry.url not set")
        verify = registry_access(self.config).verify
        try:
            resp = requests.get(f"{self.address}/v2/", timeout=3, verify=verify)
        except requests.RequestException as exc:
            return Probe(False, detail=f"no answer ({type(exc).__name__})")
        api = resp.headers.get("Docker-Distribution-Api-Version", "")
        if resp.status_code not in (200, 401) or not api.startswith("registry/2"):
            return Probe(False, detail=f"not a registry (HTTP {resp.status_code})")
        challenge = resp.headers.get("WWW-Authenticate", "")
        if resp.status_code == 200:
            auth = "NO AUTH"
        elif challenge.lower().startswith("bearer"):
            realm = challenge.split('realm="', 1)[-1].split('"', 1)[0]
            try:
                requests.get(realm, timeout=3, verify=verify)
            except requests.RequestException as exc:
                # The registry answers, but nobody could log in: not usable.
                return Probe(False, detail=f"token service {realm} does not answer ({type(exc).__name__})")
            auth = "token auth"
        else:
            auth = "auth required"
        mode = ", read-only" if self.read_only else ""
        return Probe(True, version=f"{self._binary_version()} ({api}, {auth}{mode})".strip())

    def _binary_version(self) -> str:
        if not self.managed or shutil.which("docker-registry") is None:
            return ""
        try:
            out = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True, timeout=5).stdout
        except (subprocess.SubprocessError, OSError):
            return ""
        return out.split()[-1] if out.split() else ""

    def start(self) -> Started:
        binary = registry_binary()
        tls = self.config.registry.tls
        if tls.enabled and tls.key is None:
            raise StartError("registry.tls.key is required with registry.tls.certificate")
        host = self.config.stack.registry.host
        token_port = self.config.registry.auth.token_port or _free_port(host)
        config_path = write_server_config(self.config, token_port, self.read_only)
        auth = self.config.registry.auth
        argv = [sys.executable, "-m", "registry.supervisor", "--directory", str(registry_dir(self.config)),
                "--registry-binary", binary, "--registry-config", str(config_path), "--host", host,
                "--token-port", str(token_port), "--issuer", auth.issuer, "--service", auth.service,
                "--ttl", str(auth.token_ttl)]
        if tls.enabled:
            argv += ["--tls-certificate", str(tls.certificate), "--tls-key", str(tls.key)]
        return self.launch(argv)
