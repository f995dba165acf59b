"""asci.yaml's `alerts` section -> an ElastAlert 2 working directory: config.yaml and one file per rule.

Rules are written with the canonical index prefix `asci-logs` (like the logging assets) and
`@AUTOBUILD_URL@` for links; both are replaced here, then per-rule overrides and the Slack
alerter are added. The generated files hold the webhook URL, so the directory is private (0700/0600).
"""
from __future__ import annotations

from asci_core.errors import UsageError

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from alerts.rules_source import rule_files
from asci_core.config import Config
from asci_logging.search_client import SearchAccess

CANONICAL_PREFIX = "asci-logs"
AUTOBUILD_URL_MARK = "@AUTOBUILD_URL@"
# Lint and dry runs need some URL in the rule; nothing is ever posted there.
UNSENT_WEBHOOK = "http://127.0.0.1:9/not-configured"


class RuleFileError(UsageError):
    """A rule file that cannot even be read as YAML: `path: problem`."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; in a rule that hides a threshold."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


@dataclass(frozen=True)
class Workdir:
    root: Path
    config: Path
    rules: dict[str, Path]   # rule name -> generated file


def workdir_for(config: Config) -> Path:
    return config.alerts.workdir or config.stack.state_dir / "alerts"


def autobuild_url(config: Config) -> str:
    if config.autobuild.public_url:
        return config.autobuild.public_url.rstrip("/")
    return f"http://{config.server.host}:{config.server.port}"


def engine_options(config: Config) -> dict[str, Any]:
    engine = SearchAccess.from_config(config)
    url = urlsplit(engine.url)
    options: dict[str, Any] = {"es_host": url.hostname, "es_port": url.port or (443 if url.scheme == "https" else 80),
                               "use_ssl": url.scheme == "https"}
    if url.path.strip("/"):
        options["es_url_prefix"] = url.path.strip("/")
    if engine.username and engine.password:
        options["es_username"] = engine.username
        options["es_password"] = engine.password.reveal()
    return options


def global_config(config: Config, rules_folder: Path) -> dict[str, Any]:
    settings = config.alerts
    return {
        "rules_folder": str(rules_folder),
        "scan_subdirectories": False,
        "run_every": {"seconds": settings.run_every_seconds},
        "buffer_time": {"minutes": settings.buffer_minutes},
        **engine_options(config),
        "writeback_index": settings.writeback_index,
        # After an outage longer than the buffer, start afresh instead of replaying old matches
        # as a burst of stale alerts.
        "old_query_limit": {"minutes": settings.buffer_minutes},
        # An alert Slack refused is retried for two hours, then dropped.
        "alert_time_limit": {"hours": 2},
        # A rule whose query failed once (engine restarting) must stay on.
        "disable_rules_on_error": False,
        "max_query_size": 10000,
        # A rule slow on a full page (cardinality: ~10k hits in over 30 s when catching up) lost its
        # scroll context with ElastAlert's default of 30 s and dropped the rest of the range.
        "scroll_keepalive": "5m",
        "show_disabled_rules": False,
    }


def rule_document(name: str, source: Path, config: Config, webhook_url: str) -> dict[str, Any]:
    text = source.read_text(encoding="utf-8")
    text = text.replace(CANONICAL_PREFIX, config.logging.prefix).replace(AUTOBUILD_URL_MARK, autobuild_url(config))
    try:
        rule = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise RuleFileError(f"{source}: not valid YAML: {where}{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(rule, dict):
        raise RuleFileError(f"{source}: expected a mapping of rule options")
    for override in config.alerts.overrides:
        if override.rule == name:
            options = override.options()
            if rule.get("type") == "metric_aggregation":
                # The engine-counted cardinality rule names its limit and window differently.
                if "max_cardinality" in options:
                    options["max_threshold"] = options.pop("max_cardinality")
                if "timeframe" in options:
                    options["buffer_time"] = options["timeframe"]
            rule.update(options)
    settings = config.alerts
    rule.update({
        "alert": ["slack"],
        "slack_webhook_url": webhook_url,
        "slack_timeout": settings.slack_timeout,
        "slack_username_override": "ASCI alerts",
        "slack_emoji_override": ":rotating_light:",
    })
    if settings.kibana_url:
        rule["slack_title_link"] = settings.kibana_url.rstrip("/") + "/app/discover"
    return rule


def render(config: Config, root: Path | None = None, webhook_url: str | None = None,
           only: str | None = None) -> Workdir:
    """Write config.yaml and rules/ under ROOT (default STATE_DIR/alerts); raises RuleFileError."""
    settings = config.alerts
    root = root or workdir_for(config)
    if webhook_url is None:
        webhook_url = settings.slack_webhook_url.reveal() if settings.slack_webhook_url else UNSENT_WEBHOOK
    files = rule_files(settings.rules_dir)
    # ONLY (lint, a dry run) picks one rule whether or not it is switched on.
    if only is not None:
        chosen = {only: files[only]}
    else:
        chosen = {name: path for name, path in files.items() if not settings.rules or name in settings.rules}
    rules_folder = root / "rules"
    rules_folder.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    os.chmod(rules_folder, 0o700)
    for stale in rules_folder.glob("*.yaml"):
        if stale.stem not in chosen:
            stale.unlink()
    written: dict[str, Path] = {}
    for name, source in chosen.items():
        written[name] = _write_private(rules_folder / f"{name}.yaml",
                                       rule_document(name, source, config, webhook_url))
    conf = _write_private(root / "config.yaml", global_config(config, rules_folder))
    return Workdir(root, conf, written)


def _write_private(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(data, out, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)
    return path
