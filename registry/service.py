"""The facility registry (Docker Distribution, Debian `docker-registry`) as a stack part.

Managed mode writes the registry's YAML config and a bcrypt htpasswd file under
STATE_DIR/registry and serves on loopback. The generated credentials stay in a
0600 file there; nothing prints them. Unmanaged mode points at a site registry.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import bcrypt
import requests
import yaml

from asci_core.config import Config, Secret
from asci_core.stack.part import Part, Probe, Started, StartError

ADMIN_USER = "asci-admin"


@dataclass(frozen=True)
class RegistryAccess:
    """How ASCI code reaches the registry: `address` is what image names start with."""

    url: str
    address: str
    username: str | None
    password: Secret | None

    def auth_config(self) -> dict[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password.reveal()}

    def auth(self) -> tuple[str, str] | None:
        cfg = self.auth_config()
        return None if cfg is None else (cfg["username"], cfg["password"])


def registry_dir(config: Config) -> Path:
    return config.stack.state_dir / "registry"


def registry_access(config: Config) -> RegistryAccess:
    settings = config.stack.registry
    if not settings.managed:
        if not settings.url:
            raise StartError("stack.registry.url is required when stack.registry.managed is false")
        parsed = urlparse(settings.url)
        return RegistryAccess(settings.url.rstrip("/"), parsed.netloc, settings.username, settings.password)
    address = f"{settings.host}:{settings.port}"
    creds = _read_credentials(registry_dir(config) / "credentials.json")
    user, password = (creds if creds else (None, None))
    return RegistryAccess(f"http://{address}", address, user, password)


def _read_credentials(path: Path) -> tuple[str, Secret] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StartError(f"registry credentials {path} unreadable ({exc})") from None
    return data["username"], Secret(data["password"], f"file:{path}")


def ensure_credentials(directory: Path) -> None:
    """Create the admin user once: a random password, bcrypt in htpasswd, plain in a 0600 file."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    creds = directory / "credentials.json"
    htpasswd = directory / "htpasswd"
    if creds.exists() and htpasswd.exists():
        return
    password = secrets.token_urlsafe(24)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    _write_private(htpasswd, f"{ADMIN_USER}:{hashed}\n")
    _write_private(creds, json.dumps({"username": ADMIN_USER, "password": password}) + "\n")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_server_config(config: Config) -> Path:
    directory = registry_dir(config)
    settings = config.stack.registry
    ensure_credentials(directory)
    secret_file = directory / "http-secret"
    if not secret_file.exists():
        _write_private(secret_file, secrets.token_hex(32))
    server = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"{settings.host}:{settings.port}",
            "secret": secret_file.read_text().strip(),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"htpasswd": {"realm": "asci-registry", "path": str(directory / "htpasswd")}},
    }
    path = directory / "config.yml"
    _write_private(path, yaml.safe_dump(server, sort_keys=False))
    return path


class RegistryPart(Part):
    name = "registry"

    @property
    def managed(self) -> bool:
        return self.config.stack.registry.managed

    @property
    def address(self) -> str:
        s = self.config.stack.registry
        return f"http://{s.host}:{s.port}" if s.managed else (s.url or "(stack.registry.url not set)")

    @property
    def start_timeout(self) -> float:
        return self.config.stack.registry.start_timeout

    def probe(self) -> Probe:
        if not self.managed and not self.config.stack.registry.url:
            return Probe(False, detail="stack.registry.url not set")
        try:
            resp = requests.get(f"{self.address}/v2/", timeout=3)
        except requests.RequestException as exc:
            return Probe(False, detail=f"no answer ({type(exc).__name__})")
        api = resp.headers.get("Docker-Distribution-Api-Version", "")
        if resp.status_code not in (200, 401) or not api.startswith("registry/2"):
            return Probe(False, detail=f"not a registry (HTTP {resp.status_code})")
        auth = "auth required" if resp.status_code == 401 else "NO AUTH"
        return Probe(True, version=f"{self._binary_version()} ({api}, {auth})".strip())

    def _binary_version(self) -> str:
        if not self.managed or shutil.which("docker-registry") is None:
            return ""
        try:
            out = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True, timeout=5).stdout
        except (subprocess.SubprocessError, OSError):
            return ""
        return out.split()[-1] if out.split() else ""

    def start(self) -> Started:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise StartError("docker-registry is not installed (Debian package docker-registry; run scripts/setup.sh)")
        config_path = write_server_config(self.config)
        return self.launch([binary, "serve", str(config_path)])
