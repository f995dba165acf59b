"""The `alerts:` section of the configuration: how ElastAlert 2 runs ASCI's rules."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asci_core.config_base import Secret, setting


@dataclass(frozen=True)
class RuleOverride:
    rule: str = setting(help="rule file name without .yaml, e.g. brute-force-account")
    num_events: int | None = setting(None, help="frequency rules: events within timeframe that fire", check="positive")
    timeframe_minutes: float | None = setting(None, help="the rule's window", check="positive")
    realert_minutes: float | None = setting(None, help="quiet time per key after a message (0: every match)")
    threshold: int | None = setting(None, help="flatline rules: fewer events than this within timeframe fire",
                                    check="positive")
    max_cardinality: int | None = setting(None, help="cardinality rules: more distinct values than this fire",
                                          check="positive")
    spike_height: float | None = setting(None, help="spike rules: current/reference ratio that fires",
                                         check="positive")
    threshold_cur: int | None = setting(None, help="spike rules: fewest events in the current window to fire",
                                        check="positive")

    def options(self) -> dict[str, Any]:
        """The ElastAlert options this override sets."""
        out: dict[str, Any] = {}
        for name in ("num_events", "threshold", "max_cardinality", "spike_height", "threshold_cur"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.timeframe_minutes is not None:
            out["timeframe"] = {"minutes": self.timeframe_minutes}
        if self.realert_minutes is not None:
            out["realert"] = {"minutes": self.realert_minutes}
        return out


@dataclass(frozen=True)
class AlertsSettings:
    run_every_seconds: float = setting(
        30.0, help="how often every rule queries the engine; a line reaches Slack at most this long plus indexing and ElastAlert's 5 s jitter "
                   "after it was written", check="positive")
    buffer_minutes: float = setting(
        15.0, help="how far back a rule looks on a fresh start and re-reads on every pass, for late documents",
        check="positive")
    enabled: bool = setting(True, help="false: `asci alerts run` exits at once (sites paging from elsewhere)")
    slack_webhook_url: Secret | None = setting(
        None, help="Slack incoming-webhook URL for alerts; unset: `asci alerts run` refuses to start")
    slack_timeout: float = setting(10.0, help="seconds to wait for Slack per post", check="positive")
    rules: list[str] = setting(
        default_factory=list, help="rule names (file names in alerts/rules without .yaml) to run; empty: all")
    overrides: list[RuleOverride] = setting(
        default_factory=list, help="per rule: thresholds replacing the shipped ones, e.g. "
                                   "[{rule: brute-force-account, num_events: 20, realert_minutes: 60}]")
    writeback_index: str = setting("asci-alerts", help="ElastAlert's state indices (this name and _status, "
                                                       "_silence, _error, _past)", check="word")
    rules_dir: Path | None = setting(None, help="extra or replacement rule files (default: only the shipped rules)")
    workdir: Path | None = setting(None, help="the generated ElastAlert config and rules (default: STATE_DIR/alerts)")
    kibana_url: str | None = setting(None, help="Kibana/OpenSearch Dashboards base URL for the links in messages",
                                     check="url")

    def problems(self) -> list[tuple[str, str]]:
        from alerts.rules_source import rule_names

        known = rule_names(self.rules_dir)
        found: list[tuple[str, str]] = []
        for i, name in enumerate(self.rules):
            if name not in known:
                found.append((f"rules[{i}]", f"no rule named {name!r} (known: {', '.join(sorted(known))})"))
        for i, override in enumerate(self.overrides):
            if override.rule not in known:
                found.append((f"overrides[{i}].rule", f"no rule named {override.rule!r} (known: {', '.join(sorted(known))})"))
        return found
