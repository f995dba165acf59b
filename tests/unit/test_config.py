from __future__ import annotations

from pathlib import Path

import pytest

from asci_core.config import Config, ConfigError, Secret, describe, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "asci.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_embedded_defaults_need_no_file(monkeypatch):
    monkeypatch.delenv("ASCI_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.source == "<embedded defaults>"
    assert cfg.server.host == "127.0.0.1"
    assert cfg.stack.registry.port == 5000
    assert cfg.stack.search.url == "http://127.0.0.1:9200"


def test_example_file_loads_with_secrets_from_env_and_file(monkeypatch, tmp_path):
    monkeypatch.setenv("ASCI_WEBHOOK_SECRET_DESKTOP_BASE", "s3cret-value")
    monkeypatch.setenv("ASCI_GIT_TOKEN", "git-token")
    (tmp_path / "mx").write_text("mx-secret\n")
    text = (ROOT / "asci.example.yaml").read_text().replace("/etc/asci/secrets/mx-beamline", str(tmp_path / "mx"))
    cfg = load_config(write(tmp_path, text))
    assert cfg.autobuild.repositories[1].webhook_secret.reveal() == "mx-secret"
    assert cfg.autobuild.repositories[1].build_args == {"BASE_TAG": "latest"}
    assert cfg.autobuild.hosts[0].password.reveal() == "git-token"
    repo = cfg.autobuild.repositories[0]
    assert repo.name == "BL/desktop-base"
    assert repo.webhook_secret.reveal() == "s3cret-value"
    assert repo.move_latest is True
    assert cfg.autobuild.concurrency == 2


def test_secret_from_file_relative_to_config(tmp_path):
    (tmp_path / "slack-url").write_text("http://127.0.0.1:1/hook\n")
    cfg = load_config(write(tmp_path, "slack:\n  webhook_url: {file: slack-url}\n"))
    assert cfg.slack.webhook_url.reveal() == "http://127.0.0.1:1/hook"


def test_secrets_never_print_their_value():
    secret = Secret("hunter2", "env:X")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in repr(parse_config("slack:\n  webhook_url: hunter2-url\n"))


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    cfg = load_config(write(tmp_path, "stack:\n  state_dir: state\n"))
    assert cfg.stack.state_dir == tmp_path / "state"


# Each malformed file gets its own message naming the file, the key and what was expected.
MALFORMED = [
    ("unknown key", "stack:\n  registy:\n    port: 5001\n",
     "stack.registy: unknown setting (known here: base_image, docker, journald, registry, search, state_dir)"),
    ("wrong type", "server:\n  port: eighty\n", "server.port: expected an integer, got 'eighty'"),
    ("boolean is no port", "server:\n  port: yes\n", "server.port: expected an integer, got True"),
    ("port out of range", "stack:\n  registry:\n    port: 70000\n",
     "stack.registry.port: expected a port from 1 to 65535, got 70000"),
    ("missing required", "autobuild:\n  repositories:\n    - webhook_secret: x\n",
     "autobuild.repositories[0].name: required setting is missing"),
    ("section not a mapping", "stack: [docker]\n", "stack: expected a mapping of settings, got a list"),
    ("not YAML", "server:\n  port: [1, 2\n", "not valid YAML: line 3"),
    ("env secret unset", "slack:\n  webhook_url: {env: ASCI_TEST_UNSET_VARIABLE}\n",
     "slack.webhook_url: environment variable ASCI_TEST_UNSET_VARIABLE is not set or empty"),
    ("bad regex", "autobuild:\n  repositories:\n    - name: P/r\n      webhook_secret: x\n      tag_pattern: 'v(['\n",
     "autobuild.repositories[0].tag_pattern: not a valid regular expression"),
    ("path escapes repository", "autobuild:\n  repositories:\n    - name: P/r\n      webhook_secret: x\n      dockerfile: ../../etc/passwd\n",
     "autobuild.repositories[0].dockerfile: expected a path inside the repository, got '../../etc/passwd'"),
    ("bad literal", "logging:\n  level: loud\n", "logging.level: expected one of debug, info, warning, error, got 'loud'"),
    ("listen address not an IP", "server:\n  host: my host\n", "server.host: expected an IP address"),
    ("secret of the wrong shape", "slack:\n  webhook_url: {vault: x}\n",
     "slack.webhook_url: expected a secret: a string, {env: VARIABLE} or {file: PATH}"),
    ("unknown host reference", "autobuild:\n  repositories:\n    - name: P/r\n      webhook_secret: x\n      host: nowhere\n",
     "autobuild.repositories[0].host: no host named 'nowhere' in autobuild.hosts (none defined)"),
    ("build args not a mapping", "autobuild:\n  repositories:\n    - name: P/r\n      webhook_secret: x\n      build_args: [A]\n",
     "autobuild.repositories[0].build_args: expected a mapping, got a list"),
    ("heap out of range", "stack:\n  search:\n    heap_mb: 64\n", "stack.search.heap_mb: expected a value from 256 to 4096, got 64"),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_file_gives_a_clear_error(tmp_path, monkeypatch, text, expected):
    monkeypatch.delenv("ASCI_TEST_UNSET_VARIABLE", raising=False)
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_malformed_messages_are_all_different(tmp_path, monkeypatch):
    monkeypatch.delenv("ASCI_TEST_UNSET_VARIABLE", raising=False)
    messages = {error_of(write(tmp_path, text, f"{i}.yaml")).split(": ", 1)[1] for i, (_, text, _) in enumerate(MALFORMED)}
    assert len(messages) == len(MALFORMED)


def test_missing_secret_file(tmp_path):
    message = error_of(write(tmp_path, "slack:\n  webhook_url: {file: /nonexistent/asci-secret}\n"))
    assert message == (f"{tmp_path / 'asci.yaml'}: slack.webhook_url: secret file /nonexistent/asci-secret "
                       "cannot be read (No such file or directory)")


def test_secret_file_that_is_a_directory(tmp_path):
    message = error_of(write(tmp_path, f"slack:\n  webhook_url: {{file: {tmp_path}}}\n"))
    assert "slack.webhook_url: secret file" in message and "cannot be read (Is a directory)" in message


def test_missing_config_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: file not found"


def test_empty_file_means_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.server == Config().server


def test_every_setting_is_documented():
    rows = describe()
    assert len(rows) > 20
    undocumented = [key for key, _, text in rows if not text]
    assert undocumented == []
