"""The registry's token endpoint (Docker token auth), an aiohttp app.

Clients (the Docker engine, RegistryClient) are sent here by the registry's
`WWW-Authenticate: Bearer realm=...` challenge. We check the user's password
against the bcrypt htpasswd, look up the role, and sign a short-lived token
granting only what the role allows of the requested scopes.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import datetime as _dt
import hashlib
import hmac
import math
import secrets
import time
from pathlib import Path
from typing import Callable

import bcrypt
from aiohttp import web

from asci_core.jsonlog import get_logger
from registry.tokens import Scope, TokenSigner, grant
from registry.throttle import HashGate, LoginThrottle, Overloaded
from registry.users import Role, fits_bcrypt, read_htpasswd, read_roles

log = get_logger("registry")


class Authenticator:
    """Checks user:password against htpasswd + roles.json, re-reading them when either file changes.

    Every refusal costs one bcrypt check, whatever made it fail (unknown user, a
    password bcrypt cannot take, a damaged hash), so neither the answer nor its
    timing tells which it was.
    """

    def __init__(self, htpasswd: Path, roles: Path, gate: HashGate | None = None):
        self.htpasswd = htpasswd
        self.roles = roles
        self.gate = gate or HashGate()
        self._stamp: tuple[object, ...] = ()
        self._hashes: dict[str, str] = {}
        self._roles: dict[str, Role] = {}
        # bcrypt is deliberately slow (~0.2 s); a token is requested per scope set, so remember
        # recent successes as a keyed hash (never the password) for this process's lifetime.
        self._memo_key = secrets.token_bytes(32)
        self._memo: dict[tuple[str, str], bytes] = {}

    def _file_stamp(self, path: Path) -> tuple[int, int, int]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        stamp = (self._file_stamp(self.htpasswd), self._file_stamp(self.roles))
        if stamp != self._stamp:
            self._hashes = read_htpasswd(self.htpasswd)
            self._roles = read_roles(self.roles)
            self._stamp = stamp
            self._memo.clear()
            log.info("registry users loaded", users=len(self._hashes))

    def _fingerprint(self, password: str) -> bytes:
        return hmac.new(self._memo_key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    async def check(self, user: str, password: str, suspect: bool = False,
                    admit: Callable[[], bool] = lambda: True) -> Role | None:
        """The user's role when the password is right; None otherwise (unknown user included).

        SUSPECT puts the check in the gate's lower lane; `Overloaded` is raised when that lane is full.
        """
        self._reload()
        hashed = self._hashes.get(user)
        if hashed is not None and hashed.startswith("$2") and fits_bcrypt(password):
            memo = self._memo.get((user, hashed))
            if memo is not None and hmac.compare_digest(memo, self._fingerprint(password)):
                return self._roles.get(user)
            ok = await self.gate.run(suspect, lambda: _bcrypt_check(password.encode(), hashed.encode()), admit)
            if ok:
                self._memo[(user, hashed)] = self._fingerprint(password)
                return self._roles.get(user)
            if ok is False:
                return None
        # Unknown name, a password bcrypt cannot take, or a damaged hash line (refused before
        # any hashing): the same one check's work, so none of them can be told apart.
        await self.gate.run(suspect, lambda: _bcrypt_check(b"asci-dummy-password", _DUMMY_HASH), admit)
        return None


def _bcrypt_check(password: bytes, hashed: bytes) -> bool | None:
    """bcrypt's verdict; None when the stored hash is not one bcrypt can read."""
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return None


# The same cost as the real hashes, so a check against it takes as long.
_DUMMY_HASH = bcrypt.hashpw(b"asci-dummy-password", bcrypt.gensalt())
MAX_LOGGED_NAME = 64


def loggable_name(name: str) -> str:
    """A user name as it may appear in a log line: at most 64 characters, the rest counted, not copied."""
    if len(name) <= MAX_LOGGED_NAME:
        return name
    return f"{name[:MAX_LOGGED_NAME]}...(+{len(name) - MAX_LOGGED_NAME} characters)"


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _refuse(reason: str) -> web.Response:
    body = {"errors": [{"code": "UNAUTHORIZED", "message": reason}]}
    return web.json_response(body, status=401,
                             headers={"WWW-Authenticate": 'Basic realm="asci-registry-token"'})


def _slow_down(seconds: float) -> web.Response:
    # One answer for a throttled account, a throttled address and a full queue: none says which.
    body = {"errors": [{"code": "TOOMANYREQUESTS", "message": "too many failed logins; retry later"}]}
    return web.json_response(body, status=429, headers={"Retry-After": str(max(1, math.ceil(seconds)))})


# A throttled answer is held this long (costing no CPU) before it is sent, so a client that
# waits for answers cannot keep the service busy answering "too many"; beyond MAX_HELD at once
# answers go out at once, so held connections stay bounded.
HOLD_THROTTLED = 1.0
MAX_HELD = 512
# One log line per address per this many seconds while it is throttled, with a count of the rest.
THROTTLE_LOG_EVERY = 10.0


class TokenService:
    def __init__(self, signer: TokenSigner, authenticator: Authenticator, throttle: LoginThrottle | None = None):
        self.signer = signer
        self.auth = authenticator
        self.throttle = throttle or LoginThrottle()
        self._held = 0
        self._throttle_logged: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()

    def _log_throttled(self, user: str, address: str, reason: str) -> None:
        now = time.monotonic()
        last, suppressed = self._throttle_logged.pop(address, (0.0, 0))
        if now - last < THROTTLE_LOG_EVERY:
            self._throttle_logged[address] = (last, suppressed + 1)
        else:
            log.warning("registry token refused", user=loggable_name(user), source_ip=address, reason=reason,
                        also_refused_since_last_line=suppressed)
            self._throttle_logged[address] = (now, 0)
        while len(self._throttle_logged) > 10000:
            self._throttle_logged.popitem(last=False)

    async def _held_back(self, seconds: float) -> web.Response:
        if self._held < MAX_HELD:
            self._held += 1
            try:
                await asyncio.sleep(min(seconds, HOLD_THROTTLED))
            finally:
                self._held -= 1
        return _slow_down(seconds)

    async def _issue(self, request: web.Request, user: str | None, password: str | None, service: str | None,
                     scope_texts: list[str]) -> web.Response:
        if user is None or password is None:
            return _refuse("credentials required")
        if service and service != self.signer.service:
            return web.json_response({"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]},
                                     status=400)
        address = request.remote or "?"
        wait = self.throttle.retry_after(user, address)
        if wait > 0:
            self._log_throttled(user, address, "throttled after failed logins")
            return await self._held_back(wait)
        try:
            role = await self.auth.check(user, password, suspect=self.throttle.suspect(address),
                                         admit=lambda: self.throttle.retry_after(user, address) <= 0)
        except Overloaded:
            self._log_throttled(user, address, "throttled while waiting, or too many checks waiting")
            return await self._held_back(1)
        if role is None:
            self.throttle.failed(user, address)
            log.warning("registry token refused", user=loggable_name(user), source_ip=address,
                        reason="wrong user or password")
            return _refuse("wrong user or password")
        self.throttle.succeeded(user, address)
        requested = [s for s in (Scope.parse(t) for text in scope_texts for t in text.split(" ") if t) if s]
        granted = grant(role, requested)
        token, expires_in, issued = self.signer.issue(user, granted)
        if len(granted) < len(requested):
            log.info("registry token scopes not granted", user=user, asked=len(requested), granted=len(granted))
        log.info("registry token issued", user=user, role=role.value,
                 granted=[f"{s.type}:{s.name}:{','.join(sorted(s.actions))}" for s in granted])
        return web.json_response({"token": token, "access_token": token, "expires_in": expires_in,
                                  "issued_at": _iso(issued)})

    async def get_token(self, request: web.Request) -> web.Response:
        creds = _basic_credentials(request)
        user, password = creds if creds else (None, None)
        return await self._issue(request, user, password, request.query.get("service"),
                                 request.query.getall("scope", []))

    async def post_token(self, request: web.Request) -> web.Response:
        # The OAuth2 password grant some clients use instead of GET + Basic.
        form = await request.post()
        if form.get("grant_type") != "password":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        return await self._issue(request, _str(form.get("username")), _str(form.get("password")),
                                 _str(form.get("service")), [str(v) for v in form.getall("scope", [])])

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "kid": self.signer.kid})


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _iso(epoch: int) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def make_app(service: TokenService) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/token", service.get_token)
    app.router.add_post("/token", service.post_token)
    app.router.add_get("/healthz", service.health)
    return app


def build(directory: Path, issuer: str, service: str, ttl: int) -> web.Application:
    signer = TokenSigner(directory / "token.key", issuer, service, ttl)
    return make_app(TokenService(signer, Authenticator(directory / "htpasswd", directory / "roles.json")))

