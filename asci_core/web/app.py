"""The web page's routes on `asci serve`: login, the page, its JSON endpoints, the viewer and the proxy.

Every state-changing request (POST, DELETE) needs the login cookie, the login's
CSRF token in the X-CSRF-Token header and, when the browser sends one, an Origin
equal to the served origin. Bodies are small JSON objects with a hard size cap.
Launcher calls block (Docker, SQLite): they run off the event loop.
"""
from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from asci_core.jsonlog import get_logger
from asci_core.launcher.directory import USER_NAME, DirectoryError
from asci_core.launcher.errors import LauncherError

from . import access_log
from .static_urls import IMMUTABLE, REVALIDATE, StaticUrls
from .logins import COOKIE, CSRF_HEADER, Login
from .state import WebState

log = get_logger("web")
STATE_KEY = web.AppKey("web_state", WebState)
STATIC_URLS_KEY = web.AppKey("web_static_urls", StaticUrls)
LOGIN_KEY: Any = web.RequestKey("login", Login) if hasattr(web, "RequestKey") else "asci_login"
STATIC = Path(__file__).with_name("static")
NOVNC = Path("/usr/share/novnc")
SESSION_ID = re.compile(r"[0-9a-f]{16}")
MAX_BODY = 4096
GENERIC_LOGIN_ERROR = "wrong user name or password"
OWN_PREFIXES = ("/web/", "/novnc/", "/login")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def state_of(request: web.Request) -> WebState:
    return request.app[STATE_KEY]


def client_address(request: web.Request) -> str:
    return request.remote or "-"


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def served_origin(request: web.Request) -> str:
    configured = state_of(request).settings.origin
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == served_origin(request)


def current_login(request: web.Request) -> Login | None:
    return state_of(request).logins.get(request.cookies.get(COOKIE))


async def read_json(request: web.Request, limit: int = MAX_BODY) -> dict:
    """The body as a JSON object; 413 beyond LIMIT bytes, 400 when it is not one."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text=json.dumps({"error": f"body larger than {limit} bytes"}),
                                            content_type="application/json")
    raw = b""
    while len(raw) <= limit:  # read() returns what has arrived: chunked bodies come in pieces
        piece = await request.content.read(limit + 1 - len(raw))
        if not piece:
            break
        raw += piece
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw),
                                            text=json.dumps({"error": f"body larger than {limit} bytes"}),
                                            content_type="application/json")
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}), content_type="application/json")
    return body


# --- middleware -----------------------------------------------------------

@web.middleware
async def web_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path != "/" and not path.startswith(OWN_PREFIXES):
        return await handler(request)
    started = time.monotonic()
    status, size = 500, None
    try:
        response = await handler(request)
        status = response.status
        size = getattr(response, "content_length", None)
        if not isinstance(response, web.WebSocketResponse) and not response.prepared:
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if isinstance(response, web.FileResponse):
                response.headers.setdefault("Cache-Control", cache_policy(request))
        return response
    except web.HTTPException as exc:
        status = exc.status
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    finally:
        login = current_login(request)
        version = f"{request.version.major}.{request.version.minor}"
        access_log.write(client_address(request), login.user.name if login else None, request.method,
                         request.rel_url.raw_path, version, status, size, request.headers.get("User-Agent", ""),
                         time.monotonic() - started)


def cache_policy(request: web.Request) -> str:
    """Files under a content digest never change; the unversioned paths are checked on every use."""
    assets = request.app[STATIC_URLS_KEY]
    return IMMUTABLE if request.path.startswith((assets.static, assets.novnc)) else REVALIDATE


def api(handler: Handler) -> Handler:
    """A JSON endpoint for a logged-in user; POST and DELETE also need the CSRF token and the origin."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        login = current_login(request)
        if login is None:
            return error(401, "not logged in")
        if request.method in ("POST", "DELETE", "PUT", "PATCH"):
            if not origin_ok(request) or not login.csrf_matches(request.headers.get(CSRF_HEADER)):
                log.warning("request without a valid CSRF token refused", user=login.user.name,
                            client=client_address(request), path=request.path)
                return error(403, "missing or wrong CSRF token; reload the page")
        request[LOGIN_KEY] = login
        try:
            return await handler(request)
        except LauncherError as exc:
            return error(exc.status, str(exc))
        except DirectoryError as exc:
            log.error("user directory unusable", reason=str(exc))
            return error(503, "the user directory is not answering; try again later")
    return guarded


# --- login ----------------------------------------------------------------

async def login(request: web.Request) -> web.Response:
    state = state_of(request)
    address = client_address(request)
    if not origin_ok(request):
        return error(403, "request from another site refused")
    body = await read_json(request)
    name, password = body.get("user"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or len(name) > 256 or len(password) > 1024:
        return error(400, "expected user and password")
    shown = name if USER_NAME.fullmatch(name) else "(not a user name)"
    wait = state.throttle.wait_for(name, address)
    if wait > 0:
        log.warning("login throttled", user=shown, client=address, retry_after=round(wait, 1))
        return error(429, f"too many attempts; try again in {max(1, round(wait))} s",
                     **{"Retry-After": str(max(1, round(wait)))})
    try:
        user = await state.blocking(state.accounts.authenticate, name, password)
    except DirectoryError as exc:
        log.error("login failed: user directory unusable", user=shown, client=address, reason=str(exc))
        return error(503, "the user directory is not answering; try again later")
    if user is None:
        state.throttle.failed(name, address)
        log.warning("login failed", user=shown, client=address)
        return error(401, GENERIC_LOGIN_ERROR)
    state.throttle.succeeded(name)
    session_id, opened = state.logins.open(user, address)
    log.info("login", user=user.name, client=address)
    response = web.json_response({"user": user.name, "csrf": opened.csrf})
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/",
                        secure=state.settings.secure_cookies or request.secure)
    return response


@api
async def logout(request: web.Request) -> web.Response:
    state = state_of(request)
    state.logins.close(request.cookies.get(COOKIE))
    log.info("logout", user=request[LOGIN_KEY].user.name, client=client_address(request))
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


# --- pages ----------------------------------------------------------------

def render(name: str, assets: StaticUrls | None = None, **values: str) -> web.Response:
    """A page from static/ with {{key}} replaced by the HTML-escaped value; {{static}} and {{novnc}}
    are where the files are, {{modulepreload}} the viewer's modules as link tags."""
    assets = assets or StaticUrls("/web/static/", "/novnc/")
    values = {"static": assets.static, "novnc": assets.novnc, **values}
    text = (STATIC / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    links = "\n".join(f'<link rel="modulepreload" href="{html.escape(url, quote=True)}">'
                      for url in assets.viewer_modules)
    text = text.replace("{{modulepreload}}", links)
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.StreamResponse:
    login = current_login(request)
    if login is None:
        raise web.HTTPFound("/login")
    return render("index.html", request.app[STATIC_URLS_KEY], user=login.user.name, csrf=login.csrf)


async def login_page(request: web.Request) -> web.StreamResponse:
    return render("login.html", request.app[STATIC_URLS_KEY])


async def viewer_page(request: web.Request) -> web.StreamResponse:
    login = current_login(request)
    if login is None:
        raise web.HTTPFound("/login")
    session = request.match_info["session"]
    if not SESSION_ID.fullmatch(session):
        return error(404, "no such session")
    return render("viewer.html", request.app[STATIC_URLS_KEY], user=login.user.name, csrf=login.csrf, session=session)


# --- the page's JSON ------------------------------------------------------

def session_json(record: Any, titles: dict[str, str], state: WebState) -> dict:
    activity = state.activity.get(record.id)
    return {"id": record.id, "environment": record.environment,
            "title": titles.get(record.environment, record.environment), "state": record.state,
            "reason": record.reason, "node": record.node, "created_at": record.created_at,
            "viewer_bytes": (activity.bytes_in + activity.bytes_out) if activity else 0}


@api
async def overview(request: web.Request) -> web.Response:
    state = state_of(request)
    user = request[LOGIN_KEY].user.name

    def read() -> dict:
        try:
            environments = state.launcher.environments(user)
        except LauncherError:
            environments = []
        titles = {e.name: e.display_title for e in state.launcher.settings.environments}
        sessions = state.launcher.list(user)
        return {"user": user,
                "environments": [{"name": e.name, "title": e.display_title, "cpus": e.cpus, "memory": e.memory,
                                  "gpus": e.gpus} for e in environments],
                "sessions": [session_json(s, titles, state) for s in sessions]}

    return web.json_response(await state.blocking(read))


@api
async def create_session(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request, 1024)
    environment = body.get("environment")
    if not isinstance(environment, str) or not environment:
        return error(400, "expected an environment name")
    record = await state.blocking(state.launcher.create, request[LOGIN_KEY].user.name, environment)
    titles = {e.name: e.display_title for e in state.launcher.settings.environments}
    return web.json_response(session_json(record, titles, state), status=201)


def session_param(request: web.Request) -> str:
    session = request.match_info["session"]
    if not SESSION_ID.fullmatch(session):
        raise web.HTTPNotFound(text=json.dumps({"error": "no such session"}), content_type="application/json")
    return session


@api
async def stop_session(request: web.Request) -> web.Response:
    state = state_of(request)
    session = session_param(request)
    state.tokens.revoke_session(session)
    record = await state.blocking(state.launcher.stop, session, request[LOGIN_KEY].user.name)
    titles = {e.name: e.display_title for e in state.launcher.settings.environments}
    return web.json_response(session_json(record, titles, state))


@api
async def connect_session(request: web.Request) -> web.Response:
    state = state_of(request)
    session = session_param(request)
    user = request[LOGIN_KEY].user.name
    connection = await state.blocking(state.launcher.connect, session, user)
    token = state.tokens.issue(user, session, connection)
    return web.json_response({"token": token, "expires_in": state.settings.connect_token_ttl,
                              "websocket": f"/web/proxy/{session}"})


# --- wiring ---------------------------------------------------------------

def install(app: web.Application, state: WebState) -> None:
    from .proxy import proxy  # the relay pulls in the RFB code

    app[STATE_KEY] = state
    assets = StaticUrls.build(STATIC, NOVNC if NOVNC.is_dir() else None)
    app[STATIC_URLS_KEY] = assets
    app.middlewares.append(web_middleware)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/web/login", login)
    app.router.add_post("/web/logout", logout)
    app.router.add_get("/web/api/overview", overview)
    app.router.add_post("/web/api/sessions", create_session)
    app.router.add_delete("/web/api/sessions/{session}", stop_session)
    app.router.add_post("/web/api/sessions/{session}/connect", connect_session)
    app.router.add_get("/web/viewer/{session}", viewer_page)
    app.router.add_get("/web/proxy/{session}", proxy)
    app.router.add_static("/web/static/", STATIC, follow_symlinks=False, append_version=False)
    app.router.add_static(assets.static, STATIC, follow_symlinks=False, append_version=False)
    if NOVNC.is_dir():
        # Debian links vendor files into it. The versioned prefix first: it is the longer match.
        app.router.add_static(assets.novnc, NOVNC, follow_symlinks=True)
        app.router.add_static("/novnc/", NOVNC, follow_symlinks=True)

    async def close(_: web.Application) -> None:
        state.executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(close)


def page_url(config: Any) -> str:
    """Where a browser on this machine finds the page (the configured origin when there is one)."""
    if config.web.origin:
        return config.web.origin.rstrip("/") + "/"
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}/"


def install_from_config(app: web.Application, config: Any) -> None:
    """The web page on the configured launcher; on the embedded defaults, a first-run user."""
    from asci_core.launcher.shared import shared_launcher

    from .accounts import LocalAccounts
    from .first_run import ensure_users_file

    settings = config.web
    holder = shared_launcher(app, config)  # the sessions API uses the same one
    if settings.ldap.url:
        from .ldap_directory import LdapDirectory
        directory = LdapDirectory(settings.ldap)
        holder.use_directory(directory)  # sessions take uid/gid/groups from LDAP too
        launcher = holder.get()
        accounts: Any = directory
    else:
        launcher = holder.get()
        users = launcher.directory
        ensure_users_file(users.path, Path(config.stack.state_dir) / "web" / "first-run-password",
                          settings.first_run_user, page_url=page_url(config))
        accounts = LocalAccounts(users)
    install(app, WebState.build(settings, launcher, accounts))
