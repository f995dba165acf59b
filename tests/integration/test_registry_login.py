"""The token service under hostile input, on a registry of our own: long passwords, floods of
wrong passwords, hostile repository names, secrets in headers, and the generated admin.

Clients speak from distinct loopback addresses (127.0.0.x) so the throttle's per-address
state of one test never shapes another's answers.
"""
from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
import requests
import urllib3

from tests.support.sandbox import Sandbox
from registry.tokens import REGISTRY_LEEWAY, Scope, TokenSigner
from registry.users import ADMIN_USER

ASCI = str(Path(sys.executable).with_name("asci"))


def asci(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ASCI, "-c", str(config), "--log-level", "warning", "registry", *args],
                          capture_output=True, text=True, timeout=120, input=stdin)


@pytest.fixture(scope="module")
def sandbox(stack, tmp_path_factory):
    sb = Sandbox(stack.config, tmp_path_factory.mktemp("registry-login")).start()
    yield sb
    sb.stop()


def realm(sb: Sandbox) -> str:
    challenge = requests.get(f"{sb.access.url}/v2/", timeout=5).headers["WWW-Authenticate"]
    return challenge.split('realm="', 1)[1].split('"', 1)[0]


class Client:
    """HTTP to the token service from one chosen loopback address."""

    def __init__(self, sb: Sandbox, source: str):
        self.url = realm(sb)
        self.pool = urllib3.PoolManager(source_address=(source, 0), retries=False, timeout=30)

    def token(self, user: str, password: str, *scopes: str, header: str | None = None) -> urllib3.HTTPResponse:
        query = urlencode([("service", "asci-registry")] + [("scope", s) for s in scopes])
        auth = header or "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.pool.request("GET", f"{self.url}?{query}", headers={"Authorization": auth})

    def form(self, user: str, password: str) -> urllib3.HTTPResponse:
        return self.pool.request("POST", self.url, fields={"grant_type": "password", "username": user,
                                                           "password": password, "service": "asci-registry"},
                                 encode_multipart=False)


def add_user(sb: Sandbox, name: str, password: str, role: str = "pull") -> None:
    result = asci(sb.config_path, "users", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")
    assert result.returncode == 0, result.stderr


def answer(resp: urllib3.HTTPResponse) -> tuple:
    return resp.status, resp.data, resp.headers.get("WWW-Authenticate"), resp.headers.get("Content-Type")


def log_offset(sb: Sandbox) -> int:
    return sb.log_path.stat().st_size


def log_since(sb: Sandbox, offset: int) -> str:
    with open(sb.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def test_passwords_bcrypt_cannot_take_get_one_answer_for_known_and_unknown_users(sandbox):
    user, good = "longpw-user", "a-fine-password-1"
    add_user(sandbox, user, good)
    by_query, by_form = Client(sandbox, "127.0.0.11"), Client(sandbox, "127.0.0.12")
    offset = log_offset(sandbox)
    long_passwords = ["p" * 73, "p" * 80, "é" * 40, good + "x" * 60, "nul\0inside-the-password"]
    answers = set()
    for password in long_passwords:
        for name in (user, "no-such-user-longpw"):
            answers.add(answer(by_query.token(name, password)))
            answers.add(answer(by_form.form(name, password)))
    (only,) = answers  # one answer, whoever asked and however the password was too long
    assert only[0] == 401 and json.loads(only[1])["errors"][0]["message"] == "wrong user or password"
    assert Client(sandbox, "127.0.0.13").token(user, good).status == 200  # the account itself is fine
    logged = log_since(sandbox, offset)
    assert "Traceback" not in logged and '"level":"error"' not in logged

    # The CLI refuses such a password before anything is stored: one line, exit 2 (bad input).
    for password in ("p" * 80, "é" * 37):
        result = asci(sandbox.config_path, "users", "add", "longpw-cli", "--role", "pull", "--password-stdin",
                      stdin=password + "\n")
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "at most 72 bytes" in lines[0] and "Traceback" not in result.stderr
        assert password not in result.stderr
    assert "longpw-cli" not in asci(sandbox.config_path, "users", "list").stdout


def flood(client: Client, user: str, count: int, workers: int = 20) -> list[tuple]:
    """COUNT wrong passwords from one address, WORKERS at a time (throttled answers are held ~1 s)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda i: answer(client.token(user, f"wrong-password-{i}")), range(count)))


def test_failed_logins_are_throttled_per_address_and_account_without_revealing_users(sandbox):
    victim, password = "throttle-victim", "the-right-password-9"
    add_user(sandbox, victim, password)
    regular = Client(sandbox, "127.0.0.20")
    assert regular.token(victim, password).status == 200  # a client that logged in before
    spreader = Client(sandbox, "127.0.0.23")
    assert spreader.token("someone-else", "wrong-password").status == 401  # it failed once, elsewhere

    attacker = Client(sandbox, "127.0.0.21")
    seen = flood(attacker, victim, 200)
    codes = [a[0] for a in seen]
    assert set(codes) == {401, 429} and codes.count(401) <= 30 and codes.count(429) >= 170, codes

    # Wait (bounded) for the block to lapse and the next guess to be checked: that failure blocks
    # the account again for >= 2 s, and an address that failed elsewhere meets that block too,
    # so guesses spread over many addresses get one per address.
    deadline = time.monotonic() + 300
    while attacker.token(victim, "guess-after-the-block").status != 401:  # each refusal is held ~1 s
        assert time.monotonic() < deadline, "the block never lapsed"
    assert spreader.token(victim, "another-guess").status == 429
    throttled = attacker.token(victim, password)
    assert throttled.status == 429 and int(throttled.headers["Retry-After"]) >= 1  # even the right password

    # Another address with the right password still gets in: one that logged in before, and a new one.
    assert regular.token(victim, password).status == 200
    assert Client(sandbox, "127.0.0.22").token(victim, password).status == 200

    # A name that does not exist is throttled exactly alike, with the same answers.
    unknown = flood(Client(sandbox, "127.0.0.24"), "throttle-nobody", 200)
    codes = [a[0] for a in unknown]
    assert set(codes) == {401, 429} and codes.count(401) <= 30 and codes.count(429) >= 170, codes
    assert set(unknown) == set(seen)


def test_hostile_repository_names_get_no_access_in_the_token(sandbox):
    client = Client(sandbox, "127.0.0.30")
    admin, password = sandbox.access.username, sandbox.access.password.reveal()
    hostile = ["../x", "a/../../etc", "x" * 300, "caf\u00e9/desk", "desk\u0660", "UPPER/case", "a//b", "/abs",
               "a b", "name\nnewline", "trailing/"]
    asked = [f"repository:{name}:pull,push" for name in hostile] + ["repository:fine/name:pull"]
    resp = client.token(admin, password, *asked)
    assert resp.status == 200
    cert = (sandbox.config.stack.state_dir / "registry" / "token.crt").read_bytes()
    from cryptography import x509

    claims = jwt.decode(json.loads(resp.data)["token"], x509.load_pem_x509_certificate(cert).public_key(),
                        algorithms=["ES256"], audience="asci-registry")
    assert claims["access"] == [{"type": "repository", "name": "fine/name", "actions": ["pull"]}]
    # The longest name the grammar allows is still granted.
    longest = "/".join(["a" * 127, "b" * 127])
    assert len(longest) == 255
    claims = jwt.decode(json.loads(client.token(admin, password, f"repository:{longest}:pull").data)["token"],
                        options={"verify_signature": False})
    assert [a["name"] for a in claims["access"]] == [longest]


def test_no_part_of_a_secret_header_reaches_the_log_and_growth_is_bounded(sandbox):
    offset = log_offset(sandbox)
    secret = "Zq7-SECRET-" * 1000
    credential = base64.b64encode(f"leaky-user:{secret}".encode()).decode()
    client = Client(sandbox, "127.0.0.40")
    sent = 0
    for header in (f"Basic {credential}", f"Bearer {credential}", f"Basic {credential[:6000]}",
                   "Basic " + base64.b64encode(("n" * 5000 + ":" + secret[:500]).encode()).decode()):
        for url in (client.url, f"{sandbox.access.url}/v2/_catalog"):
            status = client.pool.request("GET", url, headers={"Authorization": header}).status
            assert status in (400, 401, 431)
            sent += 1
    resp = client.form("u" * 60000, secret[:70])  # a 60 kB user name
    assert resp.status == 401
    sent += 1

    logged = log_since(sandbox, offset)
    assert secret[:11] not in logged
    for start in range(0, 200, 4):  # no 12-character run of the encoded credential, wherever it starts
        assert credential[start:start + 12] not in logged
    assert "n" * 100 not in logged and "u" * 100 not in logged
    assert len(logged.encode()) <= sent * 2048, len(logged)
    assert "u" * 64 + "...(+59936 characters)" in logged  # the name is capped, and says so

    log_mode = stat.S_IMODE(sandbox.log_path.stat().st_mode)
    dir_mode = stat.S_IMODE(sandbox.log_path.parent.stat().st_mode)
    assert log_mode & 0o137 == 0 and dir_mode & 0o027 == 0, (oct(log_mode), oct(dir_mode))


def test_token_lifetime_at_the_registry_is_the_setting(sandbox):
    """Signed with the service's own key at chosen times: the registry's verdict is what counts."""
    directory = sandbox.config.stack.state_dir / "registry"
    ttl = sandbox.config.registry.auth.token_ttl
    signer = TokenSigner(directory / "token.key", sandbox.config.registry.auth.issuer,
                         sandbox.config.registry.auth.service, ttl)
    catalog = [Scope("registry", "catalog", frozenset({"*"}))]

    def status_of(issued_at: int) -> int:
        token, expires_in, _ = signer.issue(ADMIN_USER, catalog, now=issued_at)
        assert expires_in == ttl
        return requests.get(f"{sandbox.access.url}/v2/_catalog", timeout=5,
                            headers={"Authorization": f"Bearer {token}"}).status_code

    now = int(time.time())
    assert status_of(now) == 200
    assert status_of(now - ttl + 20) == 200  # 20 s of its lifetime left
    # Its lifetime ended 5 s ago; with exp = iat + ttl the registry's leeway would still take it.
    assert status_of(now - ttl - 5) == 401
    assert REGISTRY_LEEWAY == 60


def test_removing_the_generated_admin_revokes_its_password_for_good(stack, tmp_path):
    with Sandbox(stack.config, tmp_path / "admin") as sb:
        credentials = sb.config.stack.state_dir / "registry" / "credentials.json"
        old = json.loads(credentials.read_text())["password"]
        add_user(sb, "second-admin", "second-admin-password", role="admin")
        removed = asci(sb.config_path, "users", "remove", ADMIN_USER)
        assert removed.returncode == 0, removed.stderr
        client = Client(sb, "127.0.0.50")
        assert client.token(ADMIN_USER, old).status == 401
    with Sandbox(stack.config, tmp_path / "admin") as sb:  # the next start re-creates the admin
        new = json.loads(credentials.read_text())["password"]
        assert new != old
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        client = Client(sb, "127.0.0.51")
        assert client.token(ADMIN_USER, old).status == 401
        assert client.token(ADMIN_USER, new).status == 200
        assert isinstance(sb.client().catalog(), list)  # ASCI's own access uses the new password
    with Sandbox(stack.config, tmp_path / "admin") as sb:  # and an ordinary restart keeps it
        assert json.loads(credentials.read_text())["password"] == new
        assert Client(sb, "127.0.0.52").token(ADMIN_USER, new).status == 200
