"""Tokens of the sessions API, its throttles and its settings: pure parts, no service."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from asci_core.config import ConfigError, parse_config
from asci_core.launcher.api_tokens import (Principal, TokenFileError, TokenRing, ensure_admin_token,
                                           read_admin_token)
from asci_core.throttle import TokenBuckets
from tests.support.clock import FakeClock


def test_a_bucket_allows_its_burst_then_refills_at_its_rate():
    clock = FakeClock(100.0)
    buckets = TokenBuckets(3, 0.5, clock=clock)
    assert [buckets.take("alice") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("bob")  # one bucket per key
    assert buckets.empty("alice") and buckets.retry_after("alice") == 2
    clock.now += 2
    assert not buckets.empty("alice") and buckets.take("alice") and not buckets.take("alice")


def test_buckets_forget_idle_keys_so_many_addresses_cannot_grow_memory():
    clock = FakeClock(100.0)
    buckets = TokenBuckets(2, 1.0, max_keys=100, clock=clock)
    for i in range(1000):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.01
    assert len(buckets._state) <= 101


def test_the_ring_knows_each_token_and_nothing_else():
    alice, proxy = Principal("alice", False), Principal("proxy", True)
    ring = TokenRing([("a" * 40, alice), ("p" * 40, proxy)])
    assert ring.identify("a" * 40) == alice and ring.identify("p" * 40) == proxy
    for wrong in ("", "a" * 39, "a" * 41, "A" * 40, "\udcff" * 40):
        assert ring.identify(wrong) is None
    assert "a" * 40 not in repr(ring.__dict__)  # only digests are kept


def test_the_admin_token_is_made_once_private_and_read_back(tmp_path):
    path = tmp_path / "launcher" / "api-token"
    token = ensure_admin_token(path)
    assert len(token) >= 43 and ensure_admin_token(path) == token == read_admin_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o640)
    with pytest.raises(TokenFileError, match="readable by other users"):
        read_admin_token(path)
    with pytest.raises(TokenFileError, match="no API token at .*asci serve"):
        read_admin_token(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_text("abc\n")
    short.chmod(0o600)
    with pytest.raises(TokenFileError, match="no usable token"):
        read_admin_token(short)


def test_configured_tokens_are_secrets_checked_for_length_and_names(monkeypatch):
    monkeypatch.setenv("PROXY_TOKEN", "p" * 40)
    config = parse_config("launcher_api:\n  tokens:\n    - {user: proxy, token: {env: PROXY_TOKEN}, service: true}\n")
    (entry,) = config.launcher_api.tokens
    assert entry.user == "proxy" and entry.service and entry.token.reveal() == "p" * 40
    assert "p" * 40 not in repr(config)
    with pytest.raises(ConfigError, match=r"launcher_api.tokens\[0\].token: shorter than 32 characters"):
        parse_config("launcher_api:\n  tokens:\n    - {user: alice, token: short}\n")
    with pytest.raises(ConfigError, match=r"tokens\[1\].token: the same token is listed twice"):
        parse_config("launcher_api:\n  tokens:\n    - {user: alice, token: " + "x" * 40 + "}\n"
                     "    - {user: bob, token: " + "x" * 40 + "}\n")
    with pytest.raises(ConfigError, match=r"tokens\[0\].user: expected a user or service name"):
        parse_config("launcher_api:\n  tokens:\n    - {user: 'Al ice', token: " + "x" * 40 + "}\n")
    with pytest.raises(ConfigError, match="launcher_api.create_burst: expected a value from 1 to 1000"):
        parse_config("launcher_api:\n  create_burst: 0\n")


def test_the_commented_example_in_asci_example_yaml_loads(monkeypatch, tmp_path):
    text = (Path(__file__).resolve().parents[2] / "asci.example.yaml").read_text()
    block = text[text.index("# launcher_api:"):text.index("# Researchers' desktop sessions.")]
    yaml_text = "\n".join(line[2:] for line in block.splitlines() if line.startswith("# "))
    (tmp_path / "alice").write_text("a" * 43 + "\n")
    monkeypatch.setenv("ASCI_PROXY_TOKEN", "p" * 43)
    api = parse_config(yaml_text.replace("/etc/asci/tokens", str(tmp_path))).launcher_api
    assert [(t.user, t.service) for t in api.tokens] == [("alice", False), ("proxy", True)]
    assert api.create_burst == 5 and api.cull_interval == 60
