"""ASCI configuration: one YAML file, a section per component, validated up front.

Settings are declared as frozen dataclasses (core sections here, component
sections in each component's settings module, registered through
asci_core.components); the loader walks their type hints, so a setting's type,
default and help text live in one place. Every mistake is a ConfigError naming
the file, the dotted key and what was expected.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from asci_core.components import settings_sections
from asci_core.config_base import CHECKS, ConfigError, Secret, setting

__all__ = ["Config", "ConfigError", "Secret", "describe", "load_config", "parse_config"]

ENV_CONFIG = "ASCI_CONFIG"
ENV_STATE_DIR = "ASCI_STATE_DIR"


def _default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/asci")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base) / "asci"


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


# --- sections ---------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", help="address `asci serve` listens on", check="host")
    port: int = setting(8080, help="port of the HTTP service", check="port")
    shutdown_timeout: float = setting(10.0, help="seconds to finish requests on SIGTERM", check="positive")
    # Limits of every connection to `asci serve`, whichever component's routes it asks for (asci_core.http_guard).
    header_timeout_seconds: float = setting(
        10.0, help="a client must send its complete request headers within this time of connecting, "
                   "or the connection is answered 408 and closed", check="positive")
    idle_timeout_seconds: float = setting(15.0, help="an idle keep-alive connection is closed after this",
                                          check="positive")
    max_connections: int = setting(
        256, help="connections served at once by `asci serve`; more are answered 503 and closed", check="positive")


@dataclass(frozen=True)
class DockerSettings:
    managed: bool = setting(True, help="start dockerd when no engine answers")
    socket: Path = setting(Path("/var/run/docker.sock"), help="Docker Engine API socket")
    start_timeout: float = setting(60.0, help="seconds to wait for the engine", check="positive")


@dataclass(frozen=True)
class JournaldSettings:
    managed: bool = setting(True, help="run systemd-journald standalone when none answers")
    binary: Path = setting(Path("/lib/systemd/systemd-journald"), help="journald executable")
    start_timeout: float = setting(15.0, help="seconds to wait for journald", check="positive")


@dataclass(frozen=True)
class RegistrySettings:
    managed: bool = setting(True, help="run the Distribution registry on loopback; false means use `url`")
    host: str = setting("127.0.0.1", help="listen address of the managed registry", check="host")
    port: int = setting(5000, help="listen port of the managed registry", check="port")
    url: str | None = setting(None, help="registry URL when not managed, e.g. https://registry.site:5000", check="url")
    username: str | None = setting(None, help="registry user when not managed")
    password: Secret | None = setting(None, help="registry password when not managed")
    start_timeout: float = setting(20.0, help="seconds to wait for the registry", check="positive")


@dataclass(frozen=True)
class SearchSettings:
    managed: bool = setting(True, help="run the embedded OpenSearch node; false means use `url`")
    url: str = setting("http://127.0.0.1:9200", help="Elasticsearch-API endpoint", check="url")
    transport_port: int = setting(9300, help="transport port of the managed node", check="port")
    heap_mb: int = setting(1024, help="JVM heap of the managed node in MiB (512 tripped the circuit breaker under the full test suite plus alert runs)", check=("range", 256, 4096))
    username: str | None = setting(None, help="user for a site's Elasticsearch")
    password: Secret | None = setting(None, help="password for a site's Elasticsearch")
    launcher_dir: Path = setting(default_factory=lambda: _project_root() / "tools/search-engine",
                                 help="folder of the Java launcher (tools/search-engine)")
    start_timeout: float = setting(120.0, help="seconds to wait for the node", check="positive")


@dataclass(frozen=True)
class BaseImageSettings:
    enabled: bool = setting(True, help="make sure the base image exists on `stack up`")
    name: str = setting("debian:bookworm", help="image name:tag to create with debootstrap", check="image")
    suite: str = setting("bookworm", help="Debian suite to bootstrap", check="word")
    mirror: str = setting("http://deb.debian.org/debian", help="Debian mirror for debootstrap", check="url")
    security_mirror: str = setting("http://deb.debian.org/debian-security", help="Debian security mirror", check="url")
    tiny_name: str = setting("asci/tiny:latest", help="busybox image for quick tests", check="image")


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path = setting(default_factory=lambda: Path(os.environ.get(ENV_STATE_DIR) or _default_state_dir()),
                              help="where the stack keeps data, logs, credentials and what it started")
    docker: DockerSettings = field(default_factory=DockerSettings)
    journald: JournaldSettings = field(default_factory=JournaldSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    base_image: BaseImageSettings = field(default_factory=BaseImageSettings)

    def problems(self) -> list[tuple[str, str]]:
        found = []
        if not self.registry.managed and not self.registry.url:
            found.append(("registry.url", "required when stack.registry.managed is false (the site registry's URL)"))
        return found


@dataclass(frozen=True)
class SlackSettings:
    webhook_url: Secret | None = setting(None, help="incoming-webhook URL; unset means no Slack notices")
    notify_success: bool = setting(False, help="post successful builds too")


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = setting("info", help="lowest level ASCI's own logs write")


CORE_SECTIONS: tuple[tuple[str, type], ...] = (
    ("server", ServerSettings),
    ("stack", StackSettings),
    ("log", LogSettings),
    ("slack", SlackSettings),
)

# Settings that moved: the old key still loads, into its new place (and `asci` logs a line saying so).
MOVED: dict[str, str] = {
    "logging.level": "log.level",
    # App-wide connection limits that lived in autobuild's section, the first component to serve HTTP.
    "autobuild.header_timeout_seconds": "server.header_timeout_seconds",
    "autobuild.idle_timeout_seconds": "server.idle_timeout_seconds",
    "autobuild.max_connections": "server.max_connections",
}


def _config_class() -> type:
    """Config: the core sections, then every registered component's (config.autobuild, config.logging, ...)."""
    fields: list[tuple[str, Any, Any]] = [
        ("source", str, setting("<embedded defaults>", help="where this configuration came from", internal=True))]
    for name, cls in (*CORE_SECTIONS, *settings_sections()):
        if any(name == f[0] for f in fields):
            raise TypeError(f"two settings sections are named {name!r}")
        fields.append((name, cls, field(default_factory=cls)))
    cls = dataclasses.make_dataclass("Config", fields, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "The whole configuration: one attribute per section (config.server, config.autobuild, ...)."
    return cls


Config = _config_class()


# --- loading ----------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None, moved: list[tuple[str, str]] | None = None) -> Config:
    """Load PATH, else $ASCI_CONFIG, else the embedded defaults. Each setting the file writes under
    its old key is added to MOVED as (old key, new key)."""
    chosen = path if path is not None else os.environ.get(ENV_CONFIG)
    if not chosen:
        return Config()
    source = str(chosen)
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot be read ({exc})") from None
    return parse_config(text, source, base_dir=Path(chosen).resolve().parent, moved=moved)


def parse_config(text: str, source: str = "<string>", base_dir: Path | None = None,
                 moved: list[tuple[str, str]] | None = None) -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, "", f"not valid YAML: {where}{problem}") from None
    if data is None:
        data = {}
    loader = _Loader(source, base_dir or Path.cwd())
    if isinstance(data, dict):
        data = loader.moved(data)
    values = loader.section(Config, data, "", skip={"source"})
    config = Config(source=source, **values)
    if moved is not None:
        moved.extend((old, new) for new, old in loader.renamed.items())
    for name in values:
        # A section may check what single settings cannot: references between them, uniqueness.
        check = getattr(getattr(config, name), "problems", None)
        for key, problem in (check() if check else []):
            raise ConfigError(source, f"{name}.{key}", problem)
    return config


class _Loader:
    def __init__(self, source: str, base_dir: Path):
        self.source = source
        self.base_dir = base_dir
        self.renamed: dict[str, str] = {}  # new key -> the old key the file used, for messages

    def fail(self, key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(self.source, key, problem)

    def moved(self, data: dict[str, Any]) -> dict[str, Any]:
        """Put settings written under their old key (MOVED) into their new place; both at once is a mistake."""
        data = dict(data)
        for old, new in MOVED.items():
            (old_section, old_name), (new_section, new_name) = old.split("."), new.split(".")
            section = data.get(old_section)
            if not isinstance(section, dict) or old_name not in section:
                continue
            target = data.get(new_section) or {}
            if not isinstance(target, dict):
                continue
            if new_name in target:
                self.fail(old, f"moved to {new}, which is set too: keep only {new}")
            data[old_section] = {k: v for k, v in section.items() if k != old_name}
            data[new_section] = {**target, new_name: section[old_name]}
            self.renamed[new] = old
        return data

    def section(self, cls: type, data: Any, key: str, skip: set[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(key or "(top level)", f"expected a mapping of settings, got {_kind(data)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
        for name in data:
            if name not in fields:
                known = ", ".join(sorted(fields))
                self.fail(_join(key, str(name)), f"unknown setting (known here: {known})")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            sub = _join(key, name)
            if name in data:
                values[name] = self.value(hints[name], data[name], self.renamed.get(sub, sub), f.metadata)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.fail(sub, f"required setting is missing ({f.metadata.get('help', name)})")
        return values

    def value(self, hint: Any, raw: Any, key: str, meta: typing.Mapping[str, Any]) -> Any:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if raw is None:
                return None
            return self.value(options[0], raw, key, meta)
        if origin is Literal:
            allowed = typing.get_args(hint)
            if raw not in allowed:
                self.fail(key, f"expected one of {', '.join(map(str, allowed))}, got {raw!r}")
            return raw
        if origin is list:
            (item,) = typing.get_args(hint)
            if not isinstance(raw, list):
                self.fail(key, f"expected a list, got {_kind(raw)}")
            return [self.value(item, v, f"{key}[{i}]", meta) for i, v in enumerate(raw)]
        if origin is dict:
            key_type, value_type = typing.get_args(hint)
            if not isinstance(raw, dict):
                self.fail(key, f"expected a mapping, got {_kind(raw)}")
            return {self.scalar(key_type, k, f"{key}.{k}"): self.scalar(value_type, v, f"{key}.{k}")
                    for k, v in raw.items()}
        if dataclasses.is_dataclass(hint):
            return hint(**self.section(hint, raw, key))
        if hint is Secret:
            return self.secret(raw, key)
        converted = self.scalar(hint, raw, key)
        check = meta.get("check")
        if check is not None:
            self.check(check, converted, key)
        return converted

    def scalar(self, hint: Any, raw: Any, key: str) -> Any:
        # bool is an int in Python; a YAML `yes` must not pass as a port number.
        if hint is bool:
            if not isinstance(raw, bool):
                self.fail(key, f"expected true or false, got {raw!r}")
            return raw
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                self.fail(key, f"expected an integer, got {raw!r}")
            return raw
        if hint is float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                self.fail(key, f"expected a number, got {raw!r}")
            return float(raw)
        if hint is str:
            if not isinstance(raw, str):
                self.fail(key, f"expected a string, got {_kind(raw)} {raw!r}")
            return raw
        if hint is Path:
            if not isinstance(raw, str) or not raw:
                self.fail(key, f"expected a path, got {raw!r}")
            path = Path(os.path.expanduser(raw))
            return path if path.is_absolute() else self.base_dir / path
        raise TypeError(f"no loader for {hint!r} at {key}")

    def secret(self, raw: Any, key: str) -> Secret:
        if isinstance(raw, str):
            if not raw:
                self.fail(key, "is empty")
            return Secret(raw, f"{self.source}:{key}")
        if isinstance(raw, dict) and len(raw) == 1:
            ((how, where),) = raw.items()
            if how == "env" and isinstance(where, str):
                value = os.environ.get(where)
                if not value:
                    self.fail(key, f"environment variable {where} is not set or empty")
                return Secret(value, f"env:{where}")
            if how == "file" and isinstance(where, str):
                path = Path(os.path.expanduser(where))
                path = path if path.is_absolute() else self.base_dir / path
                try:
                    value = path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    self.fail(key, f"secret file {path} cannot be read ({exc.strerror or exc})")
                if not value:
                    self.fail(key, f"secret file {path} is empty")
                return Secret(value, f"file:{path}")
        self.fail(key, "expected a secret: a string, {env: VARIABLE} or {file: PATH}")

    def check(self, check: Any, value: Any, key: str) -> None:
        name, *args = check if isinstance(check, tuple) else (check,)
        problem = CHECKS[name](value, *args)
        if problem:
            self.fail(key, problem)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def describe(cls: type | None = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every setting, those inside lists too: the source of `asci config help`."""
    cls = Config if cls is None else cls
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key = _join(prefix, f.name)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows.extend(describe(hint, key))
            continue
        if f.default is not dataclasses.MISSING:
            default = _show(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _show(f.default_factory())
        else:
            default = "(required)"
        rows.append((key, default, f.metadata.get("help", "")))
        item = _list_item(hint)
        if item is not None:
            rows.extend(describe(item, f"{key}[]"))
    return rows


def _list_item(hint: Any) -> type | None:
    """The settings class of a list of sections (list[X] or list[X] | None), else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item):
            return item
    return None


def _show(value: Any) -> str:
    """A default as it would be written in the YAML file, not as Python's repr."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return str(value) if str(value) else '""'
    if isinstance(value, (list, tuple)):
        if value and all(dataclasses.is_dataclass(v) for v in value):
            return f"{len(value)} entries (see below)"
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Secret):
        return "(secret)"
    return str(value)
