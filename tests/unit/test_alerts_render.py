"""The `alerts` section → ElastAlert's config and rule files: prefix, overrides, Slack, privacy, checks."""
from __future__ import annotations

import stat

import pytest
import yaml

from alerts.render import render
from asci_core.config import ConfigError, parse_config


def config_for(text: str, tmp_path):
    return parse_config(f"stack: {{state_dir: {tmp_path / 'state'}}}\n" + text, "test.yaml", base_dir=tmp_path)


def test_rules_get_the_prefix_overrides_and_the_slack_alerter(tmp_path):
    config = config_for("""
logging: {prefix: site-logs}
server: {host: 127.0.0.1, port: 9090}
alerts:
  slack_webhook_url: https://hooks.slack.example/services/T/B/x
  rules: [brute-force-account, build-failed]
  overrides: [{rule: brute-force-account, num_events: 20, realert_minutes: 60}]
  run_every_seconds: 10
""", tmp_path)
    workdir = render(config)
    assert workdir.root == tmp_path / "state" / "alerts"
    assert set(workdir.rules) == {"brute-force-account", "build-failed"}
    account = yaml.safe_load(workdir.rules["brute-force-account"].read_text())
    assert account["index"] == "site-logs-*" and account["num_events"] == 20
    assert account["realert"] == {"minutes": 60.0} and account["timeframe"] == {"minutes": 5}
    assert account["alert"] == ["slack"]
    assert account["slack_webhook_url"] == "https://hooks.slack.example/services/T/B/x"
    build = yaml.safe_load(workdir.rules["build-failed"].read_text())
    assert build["index"] == "site-logs-autobuild-*"
    assert "Build log: http://127.0.0.1:9090/builds/{0}/log" in build["alert_text"]
    conf = yaml.safe_load(workdir.config.read_text())
    assert conf["run_every"] == {"seconds": 10.0} and conf["es_host"] == "127.0.0.1" and conf["es_port"] == 9200
    assert conf["writeback_index"] == "asci-alerts" and conf["rules_folder"] == str(workdir.root / "rules")
    # The webhook URL is a secret: only its owner reads the generated files.
    for path in [workdir.config, *workdir.rules.values()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(workdir.root.stat().st_mode) == 0o700


def test_the_engine_counted_cardinality_rule_takes_the_same_override_names(tmp_path):
    workdir = render(config_for("alerts: {overrides: [{rule: credential-stuffing, max_cardinality: 12, "
                                "timeframe_minutes: 30}]}\n", tmp_path))
    rule = yaml.safe_load(workdir.rules["credential-stuffing"].read_text())
    assert rule["type"] == "metric_aggregation" and rule["max_threshold"] == 12
    assert rule["buffer_time"] == {"minutes": 30.0} and "max_cardinality" not in rule


def test_rules_switched_off_disappear_from_the_working_directory(tmp_path):
    render(config_for("alerts: {}\n", tmp_path))
    workdir = render(config_for("alerts: {rules: [webhook-probing]}\n", tmp_path))
    assert sorted(p.name for p in (workdir.root / "rules").glob("*.yaml")) == ["webhook-probing.yaml"]


@pytest.mark.parametrize("text, key", [
    ("alerts: {rules: [nope]}\n", "alerts.rules[0]"),
    ("alerts: {overrides: [{rule: nope, num_events: 3}]}\n", "alerts.overrides[0].rule"),
    ("alerts: {overrides: [{rule: build-failed, num_events: 0}]}\n", "alerts.overrides[0].num_events"),
    ("alerts: {writeback_index: Bad_Name}\n", "alerts.writeback_index"),
])
def test_bad_settings_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        config_for(text, tmp_path)
    assert f"test.yaml: {key}:" in str(err.value)


def test_a_rule_with_a_key_twice_is_refused_not_half_read(tmp_path):
    from alerts.render import RuleFileError

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "twice.yaml").write_text("name: twice\ntype: any\nindex: x\nrealert: {minutes: 1}\n"
                                      "filter: []\nrealert: {minutes: 30}\n")
    with pytest.raises(RuleFileError) as err:
        render(config_for(f"alerts: {{rules_dir: {rules}, rules: [twice]}}\n", tmp_path))
    assert str(err.value) == f"{rules / 'twice.yaml'}: not valid YAML: line 6: duplicate key 'realert'"
