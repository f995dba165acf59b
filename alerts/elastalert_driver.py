"""ElastAlert 2 driven from ASCI: lint, a dry run of one rule, bounded passes, and the long run.

ElastAlert is used as a library (ElastAlerter, its RulesLoader) rather than its command
line, so a bad rule becomes one line, a dry run can capture what Slack would get, and tests
can run exactly one pass.
"""
from __future__ import annotations

from asci_core.errors import UsageError

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.render import RuleFileError, Workdir, render
from alerts.rules_source import rule_files
from alerts.writeback import WritebackError, ensure_writeback
from asci_core.config import Config
from asci_logging.search_client import SearchAccess


class AlertsError(UsageError):
    """An expected failure of an `asci alerts` command: one line for the user."""


def _elastalert():
    # Importing ElastAlert loads every alerter it has (~1 s); only the commands that use it pay.
    from elastalert import elastalert as ea_module
    from elastalert.util import EAException
    return ea_module, EAException


class _ComponentTag(logging.Filter):
    """ElastAlert's own log lines carry component `alerts` in ASCI's JSON format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = "alerts"
        return True


def tag_elastalert_logs() -> None:
    # The scheduler under ElastAlert reports every job run at info: noise next to ElastAlert's own lines.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # The client logs each failed request with a traceback; ElastAlert reports the failure itself, in one line.
    logging.getLogger("elasticsearch").setLevel(logging.ERROR)
    logger = logging.getLogger("elastalert")
    if not any(isinstance(f, _ComponentTag) for f in logger.filters):
        logger.addFilter(_ComponentTag())


def _args(workdir: Workdir, *extra: str) -> list[str]:
    return ["--config", str(workdir.config), *extra]


def _parsed_args(workdir: Workdir):
    ea_module, _ = _elastalert()
    holder = ea_module.ElastAlerter.__new__(ea_module.ElastAlerter)
    holder.parse_args(_args(workdir))
    return holder.args


def lint(config: Config, scratch: Path) -> tuple[list[str], list[str]]:
    """(names of valid rules, one line per problem). Each rule is loaded by ElastAlert's own loader."""
    from elastalert.config import load_conf

    _, EAException = _elastalert()
    good: list[str] = []
    problems: list[str] = []
    for name, source in rule_files(config.alerts.rules_dir).items():
        try:
            workdir = render(config, scratch / name, only=name)
            conf = load_conf(_parsed_args(workdir))
            loader = conf["rules_loader"]
            rule = loader.load_configuration(str(workdir.rules[name]), conf)
        except RuleFileError as exc:
            problems.append(str(exc))
            continue
        except (EAException, KeyError, ValueError, TypeError) as exc:
            problems.append(f"{source}: {_one_line(exc)}")
            continue
        if rule.get("name") != name:
            problems.append(f"{source}: name must be the file name ({name!r}), got {rule.get('name')!r}")
            continue
        good.append(name)
    return good, problems


def _relevant_error(error):
    """Of the schema's one-branch-per-rule-type errors, one from the branch of the rule's own type."""
    branches: dict[Any, list] = {}
    for sub in error.context or []:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    for errors in branches.values():
        if not any(list(e.absolute_path) == ["type"] for e in errors):
            return errors[0]
    return error


def _one_line(exc: BaseException) -> str:
    import jsonschema

    cause = exc.__context__
    if isinstance(cause, jsonschema.ValidationError):
        # ElastAlert's message dumps the whole rule; the most specific schema error says what is wrong.
        best = _relevant_error(cause)
        where = ".".join(str(p) for p in best.absolute_path)
        return f"invalid rule: {where + ': ' if where else ''}{best.message}"[:400]
    text = " ".join(str(exc).split())
    return text[:400] if text else type(exc).__name__


def alerter(workdir: Workdir, *extra: str):
    """An ElastAlerter on a rendered working directory (the writeback indices must exist)."""
    ea_module, EAException = _elastalert()
    tag_elastalert_logs()
    try:
        return ea_module.ElastAlerter(_args(workdir, *extra))
    except EAException as exc:
        raise AlertsError(_one_line(exc)) from None


def prepare(config: Config, root: Path | None = None, webhook_url: str | None = None) -> Workdir:
    """Render the working directory and make sure ElastAlert's state indices exist."""
    try:
        workdir = render(config, root, webhook_url)
    except RuleFileError as exc:
        raise AlertsError(str(exc)) from None
    try:
        ensure_writeback(SearchAccess.from_config(config), config.alerts.writeback_index)
    except WritebackError as exc:
        raise AlertsError(str(exc)) from None
    return workdir


def _check_engine(config: Config) -> None:
    import requests

    engine = SearchAccess.from_config(config)
    try:
        engine.session().get(engine.url, timeout=10).raise_for_status()
    except requests.RequestException as exc:
        raise AlertsError(f"search engine at {engine.url} not usable ({type(exc).__name__})") from None


@dataclass
class Passes:
    """ElastAlert in this process, one pass at a time (tests, benchmarks): the same code `run` loops over."""

    ea: Any

    @classmethod
    def open(cls, config: Config, root: Path | None = None, webhook_url: str | None = None,
             start: dt.datetime | None = None) -> "Passes":
        workdir = prepare(config, root, webhook_url)
        ea = alerter(workdir, "--pin_rules")
        for rule in ea.rules:
            rule["initial_starttime"] = start
        return cls(ea)

    def run_once(self) -> None:
        """Every rule over [its last end (or now - buffer), now], then alerts whose time has come."""
        self.ea.run_all_rules()


def dry_run(config: Config, name: str, start: dt.datetime, end: dt.datetime, root: Path,
            webhook_url: str) -> int:
    """Run rule NAME over [START, END] posting only to WEBHOOK_URL (a local capture), no state written."""
    if name not in rule_files(config.alerts.rules_dir):
        raise AlertsError(f"no rule named {name!r} (see `asci alerts lint`)")
    try:
        workdir = render(config, root, webhook_url, only=name)
    except RuleFileError as exc:
        raise AlertsError(str(exc)) from None
    _check_engine(config)
    ea_module, EAException = _elastalert()
    tag_elastalert_logs()

    class DryRun(ea_module.ElastAlerter):
        # No state in the writeback indices: nothing silenced, recorded or pending by a preview.
        def writeback(self, doc_type, body, rule=None, match_body=None):
            return None

        def is_silenced(self, rule_name):
            until = self.silence_cache.get(rule_name)
            return bool(until and ea_module.ts_now() < until[0])

        def find_recent_pending_alerts(self, time_limit):
            return []

    try:
        ea = DryRun(_args(workdir, "--pin_rules", "--rule", str(workdir.rules[name])))
    except EAException as exc:
        raise AlertsError(_one_line(exc)) from None
    (rule,) = ea.rules
    # Aggregated rules would wait for the aggregation window; a preview sends each match at once.
    rule["aggregation"] = None
    try:
        return ea.run_rule(rule, end, start)
    except EAException as exc:
        raise AlertsError(_one_line(exc)) from None
