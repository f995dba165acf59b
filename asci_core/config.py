"""ASCI configuration: one YAML file, a section per component, validated up front.

Settings are declared as frozen dataclasses; the loader walks their type hints,
so a setting's type, default and help text live in one place. Every mistake is
reported as a ConfigError naming the file, the dotted key and what was expected.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

ENV_CONFIG = "ASCI_CONFIG"
ENV_STATE_DIR = "ASCI_STATE_DIR"


class ConfigError(Exception):
    """A configuration mistake, phrased for the person who wrote the file."""

    def __init__(self, source: str, key: str, problem: str):
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class Secret:
    """A value that must never be printed: repr and str hide it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str):
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


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
    host: str = field(default="127.0.0.1", metadata=_help("address `asci serve` listens on", check="host"))
    port: int = field(default=8080, metadata=_help("port of the HTTP service", check="port"))
    shutdown_timeout: float = field(default=10.0, metadata=_help("seconds to finish requests on SIGTERM", check="positive"))


@dataclass(frozen=True)
class DockerSettings:
    managed: bool = field(default=True, metadata=_help("start dockerd when no engine answers"))
    socket: Path = field(default=Path("/var/run/docker.sock"), metadata=_help("Docker Engine API socket"))
    start_timeout: float = field(default=60.0, metadata=_help("seconds to wait for the engine", check="positive"))


@dataclass(frozen=True)
class JournaldSettings:
    managed: bool = field(default=True, metadata=_help("run systemd-journald standalone when none answers"))
    binary: Path = field(default=Path("/lib/systemd/systemd-journald"), metadata=_help("journald executable"))
    start_timeout: float = field(default=15.0, metadata=_help("seconds to wait for journald", check="positive"))


@dataclass(frozen=True)
class RegistrySettings:
    managed: bool = field(default=True, metadata=_help("run the Distribution registry on loopback; false means use `url`"))
    host: str = field(default="127.0.0.1", metadata=_help("listen address of the managed registry", check="host"))
    port: int = field(default=5000, metadata=_help("listen port of the managed registry", check="port"))
    url: str | None = field(default=None, metadata=_help("registry URL when not managed, e.g. https://registry.site:5000", check="url"))
    username: str | None = field(default=None, metadata=_help("registry user when not managed"))
    password: Secret | None = field(default=None, metadata=_help("registry password when not managed"))
    start_timeout: float = field(default=20.0, metadata=_help("seconds to wait for the registry", check="positive"))


@dataclass(frozen=True)
class SearchSettings:
    managed: bool = field(default=True, metadata=_help("run the embedded OpenSearch node; false means use `url`"))
    url: str = field(default="http://127.0.0.1:9200", metadata=_help("Elasticsearch-API endpoint", check="url"))
    transport_port: int = field(default=9300, metadata=_help("transport port of the managed node", check="port"))
    heap_mb: int = field(default=512, metadata=_help("JVM heap of the managed node in MiB", check=("range", 256, 4096)))
    username: str | None = field(default=None, metadata=_help("user for a site's Elasticsearch"))
    password: Secret | None = field(default=None, metadata=_help("password for a site's Elasticsearch"))
    launcher_dir: Path = field(default_factory=lambda: _project_root() / "tools/search-engine",
                               metadata=_help("folder of the Java launcher (tools/search-engine)"))
    start_timeout: float = field(default=120.0, metadata=_help("seconds to wait for the node", check="positive"))


@dataclass(frozen=True)
class BaseImageSettings:
    enabled: bool = field(default=True, metadata=_help("make sure the base image exists on `stack up`"))
    name: str = field(default="debian:bookworm", metadata=_help("image name:tag to create with debootstrap", check="image"))
    suite: str = field(default="bookworm", metadata=_help("Debian suite to bootstrap", check="word"))
    mirror: str = field(default="http://deb.debian.org/debian", metadata=_help("Debian mirror for debootstrap", check="url"))
    security_mirror: str = field(default="http://deb.debian.org/debian-security", metadata=_help("Debian security mirror", check="url"))
    tiny_name: str = field(default="asci/tiny:latest", metadata=_help("busybox image for quick tests", check="image"))


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get(ENV_STATE_DIR) or _default_state_dir()),
                            metadata=_help("where the stack keeps data, logs, credentials and what it started"))
    docker: DockerSettings = field(default_factory=DockerSettings)
    journald: JournaldSettings = field(default_factory=JournaldSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    base_image: BaseImageSettings = field(default_factory=BaseImageSettings)


@dataclass(frozen=True)
class RepositorySettings:
    name: str = field(metadata=_help("Bitbucket project/slug, e.g. BL/desktop-base", check="repo"))
    webhook_secret: Secret = field(metadata=_help("HMAC secret of the repository's webhook"))
    dockerfile: str = field(default="Dockerfile", metadata=_help("Dockerfile path inside the repository", check="relpath"))
    context: str = field(default=".", metadata=_help("build context inside the repository", check="relpath"))
    tag_pattern: str = field(default=r"^v?\d+\.\d+\.\d+$", metadata=_help("tags that get built", check="regex"))
    move_latest: bool = field(default=False, metadata=_help("also point `latest` at the highest version"))


@dataclass(frozen=True)
class AutobuildSettings:
    workdir: Path | None = field(default=None, metadata=_help("clone and build area (default: STATE_DIR/autobuild)"))
    max_body_bytes: int = field(default=1024 * 1024, metadata=_help("largest webhook body accepted", check="positive"))
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1, metadata=_help("builds at once", check="positive"))
    repositories: list[RepositorySettings] = field(default_factory=list, metadata=_help("repositories that build images"))


@dataclass(frozen=True)
class SlackSettings:
    webhook_url: Secret | None = field(default=None, metadata=_help("incoming-webhook URL; unset means no Slack notices"))
    channel: str | None = field(default=None, metadata=_help("channel override"))
    notify_success: bool = field(default=False, metadata=_help("post successful builds too"))


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_help("lowest level written"))


@dataclass(frozen=True)
class Config:
    source: str = field(default="<embedded defaults>", metadata=_help("where this configuration came from", internal=True))
    server: ServerSettings = field(default_factory=ServerSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    autobuild: AutobuildSettings = field(default_factory=AutobuildSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


# --- loading ----------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load PATH, else $ASCI_CONFIG, else the embedded defaults."""
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
    return parse_config(text, source, base_dir=Path(chosen).resolve().parent)


def parse_config(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
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
    values = loader.section(Config, data, "", skip={"source"})
    return Config(source=source, **values)


class _Loader:
    def __init__(self, source: str, base_dir: Path):
        self.source = source
        self.base_dir = base_dir

    def fail(self, key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(self.source, key, problem)

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
                values[name] = self.value(hints[name], data[name], sub, f.metadata)
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
        problem = _CHECKS[name](value, *args)
        if problem:
            self.fail(key, problem)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"expected a port from 1 to 65535, got {v}"


def _check_host(v: str) -> str | None:
    if v == "localhost":
        return None
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"expected an IP address such as 127.0.0.1, got {v!r}"
    return None


def _check_url(v: str) -> str | None:
    return None if re.fullmatch(r"https?://[^\s/]+(/\S*)?", v) else f"expected an http(s) URL, got {v!r}"


def _check_regex(v: str) -> str | None:
    try:
        re.compile(v)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    return None


def _check_relpath(v: str) -> str | None:
    parts = Path(v).parts
    if Path(v).is_absolute() or ".." in parts:
        return f"expected a path inside the repository, got {v!r}"
    return None


_CHECKS: dict[str, typing.Callable[..., str | None]] = {
    "port": _check_port,
    "host": _check_host,
    "url": _check_url,
    "regex": _check_regex,
    "relpath": _check_relpath,
    "positive": lambda v: None if v > 0 else f"expected a number above 0, got {v}",
    "range": lambda v, lo, hi: None if lo <= v <= hi else f"expected a value from {lo} to {hi}, got {v}",
    "word": lambda v: None if re.fullmatch(r"[a-z][a-z0-9-]*", v) else f"expected a lower-case name, got {v!r}",
    "image": lambda v: None if re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[\w][\w.-]{0,127})?", v) else f"expected an image name such as debian:bookworm, got {v!r}",
    "repo": lambda v: None if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", v) else f"expected PROJECT/SLUG, got {v!r}",
}


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every setting: the source of `asci config help`."""
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
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = "(computed)"
        else:
            default = "(required)"
        rows.append((key, default, f.metadata.get("help", "")))
    return rows
