"""Container logging options, the engine-wide fragment and the production journald drop-in."""
from __future__ import annotations

import configparser
import json

import pytest

from asci_logging.assets import LOGGING_DIR
from asci_logging.container_logging import LOGGED_LABELS, log_config


def test_session_container_gets_tag_labels_and_driver():
    result = log_config("session", "asci-session-alice-1", user="alice", environment="mx")
    assert result.log_config == {
        "Type": "journald",
        "Config": {"tag": "asci/session/asci-session-alice-1",
                   "labels": "asci.component,asci.user,asci.environment"},
    }
    assert result.labels == {"asci.component": "session", "asci.user": "alice", "asci.environment": "mx"}


def test_labels_option_names_all_keys_even_when_unset():
    result = log_config("autobuild", "build-42")
    assert result.labels == {"asci.component": "autobuild"}
    assert result.log_config["Config"]["labels"].split(",") == list(LOGGED_LABELS)


@pytest.mark.parametrize("component,name,user", [
    ("Autobuild", "x", None), ("auto build", "x", None), ("autobuild", "-bad", None),
    ("autobuild", "x", ""), ("autobuild", "x", "two\nlines"),
])
def test_bad_values_are_refused(component, name, user):
    with pytest.raises(ValueError):
        log_config(component, name, user=user)


def test_daemon_json_fragment_uses_journald_with_the_same_labels():
    fragment = json.loads((LOGGING_DIR / "docker" / "daemon.json").read_text())
    assert fragment["log-driver"] == "journald"
    assert fragment["log-opts"]["labels"].split(",") == list(LOGGED_LABELS)


# From journald.conf(5) of systemd 252: a misspelt key is silently ignored by journald.
JOURNALD_KEYS = {
    "Storage", "Compress", "Seal", "SplitMode", "SyncIntervalSec", "RateLimitIntervalSec", "RateLimitBurst",
    "SystemMaxUse", "SystemKeepFree", "SystemMaxFileSize", "SystemMaxFiles", "RuntimeMaxUse",
    "RuntimeKeepFree", "RuntimeMaxFileSize", "RuntimeMaxFiles", "MaxFileSec", "MaxRetentionSec",
    "ForwardToSyslog", "ForwardToKMsg", "ForwardToConsole", "ForwardToWall", "TTYPath", "MaxLevelStore",
    "MaxLevelSyslog", "MaxLevelKMsg", "MaxLevelConsole", "MaxLevelWall", "LineMax", "ReadKMsg", "Audit",
}


def test_journald_drop_in_uses_only_known_keys_and_caps_size_and_rate():
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # journald keys are case-sensitive
    parser.read(LOGGING_DIR / "journald" / "asci-journald.conf")
    assert parser.sections() == ["Journal"]
    journal = parser["Journal"]
    assert set(journal) <= JOURNALD_KEYS, set(journal) - JOURNALD_KEYS
    assert journal["Storage"] == "persistent"
    assert int(journal["RateLimitBurst"]) >= 10000
    for key in ("SystemMaxUse", "SystemKeepFree", "MaxRetentionSec"):
        assert journal[key]
