"""The sessions API under `asci serve`: /api/v1/environments, /sessions, /sessions/{id}/connect, /nodes,
and /sessions/{id}/activity (the proxy's report that a viewer is connected, which feeds idle culling).

Every call carries a bearer token (api_tokens.py); there is no anonymous call.
Handlers stay thin: they check the request's shape, then hand the work to the
Launcher on a thread pool of its own (engine and SQLite calls block), and turn
its errors into `{"error": code, "reason": text}` with the error's HTTP status.

Shapes refused before anything is looked up: a session id outside the launcher's
grammar answers 404 like a missing session (the store is not asked), a body
larger than `launcher_api.max_body_bytes` 413, a body that is not a JSON object
of known fields 400. Another user's session answers exactly like a missing one.

`POST /sessions/{id}/connect` answers with the address the proxy must reach and
a fresh one-time VNC password. The password is in that response body only: it is
never logged or stored, the answer is marked no-store, and the browser issue's
proxy is the caller meant to consume it (the CLI prints it for debugging).
"""
from __future__ import annotations

import asyncio
import functools
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from aiohttp import web

from asci_core.errors import AsciError
from asci_core.jsonlog import get_logger
from asci_core.throttle import TokenBuckets

from .api_tokens import ACT_AS_HEADER, PREFIX, Principal, TokenRing, admin_token_path, ensure_admin_token, token_ring
from .container_events import ContainerEventFollower
from .directory import USER_NAME
from .leader_lock import LeaderLock
from .errors import BadRequest, LauncherError, NotAllowed, SessionNotFound, UnknownEnvironment
from .sessions import SESSION_ID, Launcher
from .shared import shared_launcher
from .settings import EnvironmentSettings
from .store import SessionRecord

log = get_logger("launcher")

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,127}")  # launcher.environments[].name (`word`), bounded
MAX_LIST = 1000


class Refused(LauncherError):
    """The API's own refusals (401, 408, 413, 429), with their error code and headers."""

    def __init__(self, status: int, error: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.error, self.reason, self.headers = status, error, reason, headers or {}


@dataclass
class ApiState:
    config: Any
    make_launcher: Callable[[], Launcher]
    creates: TokenBuckets
    auth_failures: TokenBuckets
    launcher: Launcher | None = None
    ring: TokenRing | None = None
    executor: ThreadPoolExecutor | None = None
    cull_task: asyncio.Task | None = None
    events: ContainerEventFollower | None = None
    owns_launcher: bool = True  # False: the shared launcher of `asci serve`, closed with the application
    settings: Any = field(init=False)

    def __post_init__(self) -> None:
        self.settings = self.config.launcher_api

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))


STATE = web.AppKey("launcher_api", ApiState)
# aiohttp 3.12 added typed request keys; older ones take a string.
PRINCIPAL: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "asci.principal"


def setup(app: web.Application, config: Any, scope: dict[str, str] | None = None,
          make_launcher: Callable[[], Launcher] | None = None) -> web.Application:
    """Mount the API on APP under /api/v1; returns the API's own application.

    SCOPE: the launcher's container scope (tests keep runs apart); MAKE_LAUNCHER: builds the
    Launcher at start instead of Launcher.from_config (tests give it another directory)."""
    settings = config.launcher_api
    if make_launcher is None and scope is None:
        make_launcher = shared_launcher(app, config).get  # the one launcher of this `asci serve`
        owns_launcher = False
    else:
        make_launcher = make_launcher or (lambda: Launcher.from_config(config, scope))
        owns_launcher = True
    state = ApiState(config, make_launcher,
                     TokenBuckets(settings.create_burst, settings.creates_per_minute / 60),
                     TokenBuckets(settings.auth_failures_burst, settings.auth_failures_per_minute / 60),
                     owns_launcher=owns_launcher)
    api = web.Application(middlewares=[guard])
    api[STATE] = state
    api.router.add_get("/environments", list_environments)
    api.router.add_get("/sessions", list_sessions)
    api.router.add_post("/sessions", create_session)
    api.router.add_get("/sessions/{id}", show_session)
    api.router.add_delete("/sessions/{id}", stop_session)
    api.router.add_post("/sessions/{id}/connect", connect_session)
    api.router.add_post("/sessions/{id}/activity", report_activity)
    api.router.add_get("/nodes", list_nodes)
    api.router.add_get("/nodes/{name}", show_node)
    api.on_startup.append(start)
    api.on_cleanup.append(stop)
    app.add_subapp(PREFIX, api)
    return api


# --- lifecycle ---------------------------------------------------------------


async def start(api: web.Application) -> None:
    state = api[STATE]
    state.executor = ThreadPoolExecutor(state.settings.workers, thread_name_prefix="launcher-api")
    path = admin_token_path(state.config)
    state.ring = token_ring(state.config, await state.run(ensure_admin_token, path))
    state.launcher = await state.run(state.make_launcher)
    if state.settings.container_events:
        # Before the idle returns below: services' containers exit whether or not sessions exist.
        state.events = ContainerEventFollower(state.config.stack.docker.socket,
                                              lock=LeaderLock(state.settings.container_events_lock_dir))
        state.events.start()
    log.info("sessions API ready", prefix=PREFIX, admin_token_file=str(path), tokens=len(state.settings.tokens),
             container_events=state.events is not None)
    if not state.launcher.settings.environments:
        # No environment, no session to look after: an `asci serve` that only receives webhooks
        # never touches session containers on the engine.
        log.info("launcher idle: no environments configured, nothing reconciled or culled")
        return
    if await state.run(_nobody_known, state.launcher.directory):
        # The embedded default environment alone: with no user in the users file no session can be
        # started or adopted, and reconciling would remove every session container on the engine.
        log.info("launcher idle: no users in the users file, nothing reconciled or culled")
        return
    try:
        report = await state.run(state.launcher.reconcile)
    except AsciError as exc:  # e.g. an unusable users file: serve anyway, the next start tries again
        log.warning("reconcile at start failed", reason=exc.one_line())
    else:
        log.info("reconciled at start", adopted=len(report.adopted), recovered=len(report.recovered),
                 removed=len(report.removed), closed=len(report.closed), lost=len(report.lost))
    state.cull_task = asyncio.create_task(_cull_periodically(state), name="launcher-cull")
    log.info("culling started", interval_seconds=state.settings.cull_interval)


def _nobody_known(directory: Any) -> bool:
    users = getattr(directory, "users", None)  # a local users file can say; a remote directory cannot
    if users is None:
        return False
    try:
        return not users()
    except AsciError:
        return False  # an unusable file: reconcile reports it


async def _cull_periodically(state: ApiState) -> None:
    while True:
        await asyncio.sleep(state.settings.cull_interval)
        try:
            stopped = await state.run(state.launcher.cull)
        except Exception as exc:  # the next pass tries again; a dead culler would let sessions run forever
            log.error("cull failed", reason=str(exc) or type(exc).__name__)
            continue
        if stopped:
            log.info("culled", stopped=len(stopped), sessions=[s for s, _ in stopped])
        else:
            log.debug("culled", stopped=0)


async def stop(api: web.Application) -> None:
    state = api[STATE]
    if state.events is not None:
        await asyncio.to_thread(state.events.stop)
    if state.cull_task is not None:
        state.cull_task.cancel()
        try:
            await state.cull_task
        except asyncio.CancelledError:
            pass
        log.info("culling stopped")
    if state.executor is not None:
        # A cull or create still running finishes before the store closes under it.
        await asyncio.to_thread(state.executor.shutdown, True)
    if state.launcher is not None and state.owns_launcher:
        await asyncio.to_thread(state.launcher.close)


# --- authentication and errors -------------------------------------------------


def _error(status: int, error: str, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status, headers=headers)


def _code(exc: LauncherError) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


@web.middleware
async def guard(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        request[PRINCIPAL] = _authenticate(request)
        return await handler(request)
    except Refused as exc:
        return _error(exc.status, exc.error, exc.reason, exc.headers)
    except LauncherError as exc:
        return _error(exc.status, _code(exc), exc.one_line())
    except web.HTTPException as exc:  # the router's own 404 and 405
        if exc.status >= 400:
            return _error(exc.status, "not_found" if exc.status == 404 else "method_not_allowed", exc.reason,
                          {k: v for k, v in exc.headers.items() if k == "Allow"})
        raise
    except Exception:
        # A bug: the traceback goes to the log, the caller learns only that it happened.
        log.error("API call failed", exc_info=True, method=request.method, path=request.path[:200])
        return _error(500, "internal_error", "the service failed; its log has the details")


def _authenticate(request: web.Request) -> Principal:
    state = request.app[STATE]
    address = request.remote or "unknown"
    if state.auth_failures.empty(address):
        # Refused before the token is looked at: guessing tokens from here stops working.
        raise Refused(429, "too_many_failures", "too many failed authentications from this address",
                      {"Retry-After": str(state.auth_failures.retry_after(address))})
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    principal = state.ring.identify(token) if scheme.lower() == "bearer" and token else None
    if principal is None:
        state.auth_failures.take(address)
        log.warning("API call refused", source_ip=address, method=request.method, path=request.path[:200],
                    reason="missing or unknown bearer token")
        # One answer for "no token" and "wrong token": nothing to learn from the difference.
        raise Refused(401, "unauthorized", "a valid bearer token is required",
                      {"WWW-Authenticate": 'Bearer realm="asci"'})
    return principal


def _acting_user(request: web.Request) -> str | None:
    """The user this call acts as; None for an admin or service looking at everyone."""
    principal: Principal = request[PRINCIPAL]
    named = request.headers.get(ACT_AS_HEADER)
    if named is not None and not USER_NAME.fullmatch(named):
        raise BadRequest(f"{ACT_AS_HEADER}: expected a user name such as alice")
    if principal.acts_for_anyone:
        return named
    if named is not None and named != principal.name:
        raise NotAllowed(f"this token acts only as {principal.name!r}")
    return principal.name


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["id"]
    if not SESSION_ID.fullmatch(session_id):
        # Not a 400: an id that cannot exist answers like one that does not.
        raise SessionNotFound("no such session")
    return session_id


async def _json_body(request: web.Request, known: tuple[str, ...]) -> dict[str, Any]:
    state = request.app[STATE]
    limit = state.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, "body_too_large", f"the body is larger than {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(state.settings.body_timeout):
            async for chunk in request.content.iter_chunked(8192):
                body += chunk
                if len(body) > limit:
                    raise Refused(413, "body_too_large", f"the body is larger than {limit} bytes")
    except TimeoutError:
        raise Refused(408, "body_timeout", f"the body did not arrive within {state.settings.body_timeout:g} s") from None
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(str(k)[:40] for k in data if k not in known)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (known: {', '.join(known) or 'none'})")
    return data


def _query(request: web.Request, known: tuple[str, ...]) -> None:
    unknown = sorted(k[:40] for k in request.query if k not in known)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r} (known: {', '.join(known) or 'none'})")


# --- handlers --------------------------------------------------------------------

_RECORD_FIELDS = tuple(SessionRecord.__dataclass_fields__)


def _record_json(record: SessionRecord) -> dict[str, Any]:
    # Field by field rather than SessionRecord.to_json (dataclasses.asdict): a tenth of the CPU
    # for the 1,000 records of a full list (bench/launcher_api.py).
    data = {name: getattr(record, name) for name in _RECORD_FIELDS}
    data["gpu_ids"] = list(record.gpu_ids)
    return data


def _environment_json(env: EnvironmentSettings, full: bool) -> dict[str, Any]:
    data = {"name": env.name, "title": env.display_title, "image": env.image, "cpus": env.cpus,
            "memory": env.memory_bytes, "gpus": env.gpus, "shm_size": env.shm_bytes,
            "idle_timeout": env.idle_timeout, "max_lifetime": env.max_lifetime, "node_labels": dict(env.node_labels)}
    if full:
        data.update(allowed_users=list(env.allowed_users), allowed_groups=list(env.allowed_groups))
    return data


async def list_environments(request: web.Request) -> web.Response:
    _query(request, ())
    state = request.app[STATE]
    user = _acting_user(request)
    environments = await state.run(state.launcher.environments, user)
    return web.json_response({"environments": [_environment_json(e, user is None) for e in environments]})


async def list_sessions(request: web.Request) -> web.Response:
    _query(request, ("include_stopped", "limit"))
    state = request.app[STATE]
    user = _acting_user(request)
    include_stopped = request.query.get("include_stopped", "false").lower()
    if include_stopped not in ("true", "false", "1", "0"):
        raise BadRequest("include_stopped: expected true or false")
    limit_text = request.query.get("limit", str(MAX_LIST))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST:
        raise BadRequest(f"limit: expected a number from 1 to {MAX_LIST}")
    def listing() -> bytes:
        # Serialised on the pool too: 1,000 records are ~365 KiB of JSON, milliseconds the loop would stall.
        records = state.launcher.list(user, include_stopped in ("true", "1"), int(limit_text))
        return json.dumps({"sessions": [_record_json(r) for r in records]}, separators=(",", ":")).encode()

    return web.Response(body=await state.run(listing), content_type="application/json")


async def create_session(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _query(request, ())
    data = await _json_body(request, ("environment",))
    environment = data.get("environment")
    if not isinstance(environment, str):
        raise BadRequest("environment: expected the name of an environment")
    user = _acting_user(request)
    if user is None:
        raise BadRequest(f"name the user the session is for ({ACT_AS_HEADER} header)")
    if not state.creates.take(user):
        raise Refused(429, "too_many_requests", f"too many session requests for {user!r}; try again later",
                      {"Retry-After": str(state.creates.retry_after(user))})
    if not ENVIRONMENT_NAME.fullmatch(environment):
        # No configured name looks like this; the answer never echoes more than a name's length.
        raise UnknownEnvironment(f"no environment named {environment[:64]!r}")
    record = await state.run(state.launcher.create, user, environment)
    return web.json_response(_record_json(record), status=201)


async def show_session(request: web.Request) -> web.Response:
    _query(request, ())
    session_id = _session_id(request)
    state = request.app[STATE]
    record = await state.run(state.launcher.show, session_id, _acting_user(request))
    return web.json_response(_record_json(record))


async def stop_session(request: web.Request) -> web.Response:
    _query(request, ())
    session_id = _session_id(request)
    state = request.app[STATE]
    user = _acting_user(request)
    record = await state.run(state.launcher.stop, session_id, user,
                             "stopped by its user" if user else f"stopped by {request[PRINCIPAL].name}")
    return web.json_response(_record_json(record))


async def connect_session(request: web.Request) -> web.Response:
    _query(request, ())
    session_id = _session_id(request)
    await _json_body(request, ())
    state = request.app[STATE]
    connection = await state.run(state.launcher.connect, session_id, _acting_user(request))
    return web.json_response({"session": connection.session, "node": connection.node, "address": connection.address,
                              "port": connection.port, "password": connection.password.reveal()},
                             headers={"Cache-Control": "no-store"})


async def report_activity(request: web.Request) -> web.Response:
    """A viewer is connected (the proxy reports it): the session's idle clock restarts."""
    _query(request, ())
    session_id = _session_id(request)
    await _json_body(request, ())
    principal: Principal = request[PRINCIPAL]
    if not principal.acts_for_anyone:
        # Users keep a session alive by using it; only the proxy that carries their viewer says so.
        raise NotAllowed("activity is reported by the proxy (a service token)")
    state = request.app[STATE]
    await state.run(state.launcher.show, session_id, _acting_user(request))
    await state.run(state.launcher.touch, session_id)
    return web.Response(status=204)


def _node_json(load: Any) -> dict[str, Any]:
    data = asdict(load)
    data["labels"] = dict(load.labels)
    data["backends"] = sorted(load.backends)
    # What placement counts as taken: the larger of reserved and measured (measured_at null: not measured).
    data["used_cpus"], data["used_memory"] = load.used_cpus, load.used_memory
    return data


async def list_nodes(request: web.Request) -> web.Response:
    _query(request, ())
    _acting_user(request)
    state = request.app[STATE]
    loads = await state.run(state.launcher.nodes)
    return web.json_response({"nodes": [_node_json(n) for n in loads]})


async def show_node(request: web.Request) -> web.Response:
    _query(request, ())
    _acting_user(request)
    name = request.match_info["name"]
    state = request.app[STATE]
    if NODE_NAME.fullmatch(name):
        for load in await state.run(state.launcher.nodes):
            if load.name == name:
                return web.json_response(_node_json(load))
    return _error(404, "node_not_found", "no such node")
