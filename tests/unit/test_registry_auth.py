"""Users, roles and tokens without a registry: what each role is granted, what the files hold."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import stat

import jwt
import pytest
from cryptography import x509

from registry.errors import InvalidReference
from registry.reference import parse_reference
from registry.tokens import REGISTRY_LEEWAY, Scope, TokenSigner, ensure_signing_key, grant, libtrust_key_id
from registry.token_service import Authenticator
from registry.users import ADMIN_USER, Role, UserError, UserStore


def scopes(*texts: str) -> list[Scope]:
    return [Scope.parse(t) for t in texts]


def test_each_role_gets_only_its_actions():
    asked = scopes("repository:facility/desk:pull,push,delete", "registry:catalog:*")
    assert [s.claim() for s in grant(Role.PULL, asked)] == [
        {"type": "repository", "name": "facility/desk", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert grant(Role.PUSH, asked)[0].actions == {"pull", "push"}
    assert grant(Role.ADMIN, asked)[0].actions == {"pull", "push", "delete"}
    assert grant(None, asked) == []
    assert grant(Role.ADMIN, scopes("registry:other:*")) == []


def test_scope_names_may_hold_colons():
    s = Scope.parse("repository:host:5000/desk:pull")
    assert (s.type, s.name, s.actions) == ("repository", "host:5000/desk", {"pull"})
    assert Scope.parse("nonsense") is None


def test_token_carries_the_libtrust_kid_of_the_trusted_certificate(tmp_path):
    ensure_signing_key(tmp_path / "k.pem", tmp_path / "c.pem", "asci-registry-token")
    cert = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    signer = TokenSigner(tmp_path / "k.pem", "asci-registry-token", "asci-registry", 300)
    token, ttl, _ = signer.issue("node1", scopes("repository:a/b:pull"))
    header = jwt.get_unverified_header(token)
    kid = libtrust_key_id(cert.public_key())
    assert header["kid"] == kid and header["alg"] == "ES256"
    assert len(kid.split(":")) == 12 and all(len(p) == 4 for p in kid.split(":"))
    claims = jwt.decode(token, cert.public_key(), algorithms=["ES256"], audience="asci-registry",
                        issuer="asci-registry-token")
    # The registry honours a token REGISTRY_LEEWAY seconds past exp: the lifetime it grants is the ttl.
    assert claims["sub"] == "node1" and claims["exp"] + REGISTRY_LEEWAY - claims["iat"] == ttl == 300
    assert claims["access"] == [{"type": "repository", "name": "a/b", "actions": ["pull"]}]
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_libtrust_key_id_matches_a_known_vector():
    # Computed by hand from the libtrust definition for a fixed DER blob, to pin the encoding.
    class Key:
        def public_bytes(self, *_):
            return b"\x00" * 10
    digest = hashlib.sha256(b"\x00" * 10).digest()[:30]
    encoded = base64.b32encode(digest).decode()
    assert libtrust_key_id(Key()) == ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


def test_user_store_keeps_hashes_and_roles_never_passwords(tmp_path):
    store = UserStore(tmp_path)
    store.ensure(ADMIN_USER, Role.ADMIN, "admin-password-1")
    password = store.add("node1", Role.PULL)
    chosen = store.add("autobuild", Role.PUSH, "a-chosen-password")
    assert len(password) >= 24 and chosen == "a-chosen-password"
    assert [(u.name, u.role) for u in store.list()] == [
        (ADMIN_USER, Role.ADMIN), ("autobuild", Role.PUSH), ("node1", Role.PULL)]
    for name in ("htpasswd", "roles.json"):
        text = (tmp_path / name).read_text()
        assert password not in text and chosen not in text
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "node1:$2b$" in (tmp_path / "htpasswd").read_text()
    with pytest.raises(UserError, match="exists already"):
        store.add("node1", Role.PUSH)
    with pytest.raises(UserError, match="not a valid user name"):
        store.add("Node:1", Role.PULL)
    with pytest.raises(UserError, match="last admin"):
        store.remove(ADMIN_USER)
    store.remove("node1")
    assert "node1" not in {u.name for u in store.list()}
    with pytest.raises(UserError, match="no user 'node1'"):
        store.remove("node1")


def test_authenticator_sees_changes_without_restart(tmp_path):
    store = UserStore(tmp_path)
    store.ensure(ADMIN_USER, Role.ADMIN, "admin-password-1")
    auth = Authenticator(tmp_path / "htpasswd", tmp_path / "roles.json")
    password = store.add("node1", Role.PULL)

    async def check(user: str, pw: str):
        return await auth.check(user, pw)

    assert asyncio.run(check("node1", password)) is Role.PULL
    assert asyncio.run(check("node1", password)) is Role.PULL  # the remembered path
    assert asyncio.run(check("node1", "wrong")) is None
    assert asyncio.run(check("nobody", password)) is None
    store.remove("node1")
    assert asyncio.run(check("node1", password)) is None


@pytest.mark.parametrize("text, problem", [
    ("Facility/desk:v1", "not a valid repository name"),
    ("facility/desk:-v1", "not a valid tag"),
    ("facility/desk@sha256:abc", "not a valid digest"),
    ("other.site:5000/facility/desk:v1", "names registry other.site:5000"),
    ("", "empty image reference"),
])
def test_malformed_references_fail_before_any_request(text, problem):
    with pytest.raises(InvalidReference, match=problem):
        parse_reference(text, address="127.0.0.1:5000")


def test_references_parse_tags_digests_and_addresses():
    d = "sha256:" + "a" * 64
    assert parse_reference("127.0.0.1:5000/facility/desk:v1.2", address="127.0.0.1:5000").tag == "v1.2"
    ref = parse_reference(f"facility/desk@{d}")
    assert (ref.repository, ref.tag, ref.digest, ref.reference) == ("facility/desk", None, d, d)
    assert parse_reference("desk").reference == "latest"


@pytest.mark.parametrize("password, problem", [
    ("p" * 73, "at most 72 bytes"), ("é" * 37, "at most 72 bytes"), ("short", "at least 12"),
    ("line\nbreak-password", "NUL or line breaks"), ("nul\0-in-the-password", "NUL or line breaks")])
def test_passwords_bcrypt_cannot_check_exactly_are_refused_before_storing(tmp_path, password, problem):
    store = UserStore(tmp_path)
    with pytest.raises(UserError, match=problem):
        store.add("node1", Role.PULL, password)
    assert store.list() == []
    assert store.add("node2", Role.PULL, "é" * 36) == "é" * 36  # 72 bytes: fine


def test_the_authenticator_refuses_long_passwords_without_raising(tmp_path):
    store = UserStore(tmp_path)
    store.ensure(ADMIN_USER, Role.ADMIN, "admin-password-1")
    auth = Authenticator(tmp_path / "htpasswd", tmp_path / "roles.json")
    (tmp_path / "htpasswd").write_text((tmp_path / "htpasswd").read_text() + "broken:$2b$12$not-a-hash\n")
    for user, password in ((ADMIN_USER, "admin-password-1" + "x" * 80), ("nobody", "x" * 80),
                           (ADMIN_USER, "nul\0"), ("broken", "whatever-password")):
        assert asyncio.run(auth.check(user, password)) is None


def test_scopes_for_names_outside_the_grammar_are_never_granted():
    asked = scopes("repository:../x:pull", f"repository:{'a' * 256}:pull", "repository:caf\u00e9:pull",
                   "repository:a/b\u0661:pull", "repository:ok/name:pull", "repository:A:pull")
    assert [s.name for s in grant(Role.ADMIN, asked)] == ["ok/name"]
    assert len(grant(Role.ADMIN, scopes(*[f"repository:r{i}:pull" for i in range(100)]))) == 32


def test_a_removed_generated_admin_comes_back_with_a_new_password(tmp_path):
    import json

    store = UserStore(tmp_path)
    creds = tmp_path / "credentials.json"
    store.ensure_admin(creds)
    first = json.loads(creds.read_text())["password"]
    store.ensure_admin(creds)
    assert json.loads(creds.read_text())["password"] == first  # kept while it exists
    store.add("ops", Role.ADMIN, "ops-admin-password")
    store.remove(ADMIN_USER)
    store.ensure_admin(creds)
    second = json.loads(creds.read_text())["password"]
    assert second != first and stat.S_IMODE(creds.stat().st_mode) == 0o600
    auth = Authenticator(tmp_path / "htpasswd", tmp_path / "roles.json")
    assert asyncio.run(auth.check(ADMIN_USER, first)) is None
    assert asyncio.run(auth.check(ADMIN_USER, second)) is Role.ADMIN
