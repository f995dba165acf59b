"""Registry access tokens: the signing key, and the role → scope decision.

Distribution's token auth trusts the certificates in `rootcertbundle`. In 2.8 a
JWT without an `x5c` chain must carry a `kid` equal to the libtrust key id of
the signing key: base32 of the first 240 bits of sha256(DER public key), in
colon-separated groups of four.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.errors import InvalidReference
from registry.reference import check_repository
from registry.users import Role, write_private

# Distribution accepts a token up to this long after its `exp` (and before its `nbf`),
# so `exp` is set this much earlier than the lifetime the setting promises.
REGISTRY_LEEWAY = 60
MAX_SCOPES = 32  # per token request; Docker asks for one or two


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def ensure_signing_key(key_path: Path, cert_path: Path, issuer: str) -> None:
    """Create the ES256 key and its self-signed certificate once; the registry trusts that certificate."""
    if key_path.exists() and cert_path.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(key_path, pem.decode())
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> "Scope | None":
        # The name may itself hold a colon (a registry host with a port), so split at both ends.
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            return None
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def _valid_repository(name: str) -> bool:
    try:
        check_repository(name)
    except InvalidReference:
        return False
    return True


def grant(role: Role | None, requested: Iterable[Scope]) -> list[Scope]:
    """What ROLE may have of what was asked: the intersection, never more (an empty grant is not an error).

    A repository name outside Distribution's grammar (`../x`, over 255 characters,
    non-ASCII) gets nothing: the registry would refuse it anyway, and a signed token
    must never carry a name nobody checked.
    """
    if role is None:
        return []
    granted: list[Scope] = []
    for scope in list(requested)[:MAX_SCOPES]:
        if scope.type == "repository":
            actions = scope.actions & role.actions() if _valid_repository(scope.name) else frozenset()
        elif scope.type == "registry" and scope.name == "catalog":
            # Listing names reveals nothing a puller could not pull anyway.
            actions = scope.actions & {"*"}
        else:
            actions = frozenset()
        if actions:
            granted.append(Scope(scope.type, scope.name, actions))
    return granted


class TokenSigner:
    def __init__(self, key_path: Path, issuer: str, service: str, ttl: int):
        self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(self._key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        self.kid = libtrust_key_id(self._key.public_key())
        self.issuer = issuer
        self.service = service
        self.ttl = ttl

    def issue(self, subject: str, scopes: list[Scope], now: int | None = None) -> tuple[str, int, int]:
        """Returns (token, expires_in, issued_at); the registry accepts the token for exactly `ttl` seconds."""
        now = int(time.time()) if now is None else now
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            # A little slack for clocks that disagree by a few seconds.
            "nbf": now - 5,
            "exp": now + self.ttl - REGISTRY_LEEWAY,
            "jti": secrets.token_hex(16),
            "access": [s.claim() for s in scopes],
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid, "typ": "JWT"})
        return token, self.ttl, now
