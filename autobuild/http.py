"""HTTP face of autobuild: the webhook receiver and the read-only builds API.

Handlers stay thin: they translate HTTP to Intake/Store calls and back. Work is
triggered only by POST; logs are read by GET, resumably, so a reconnecting
browser never starts anything again. SQLite reads and file reads run in a worker
thread (`asyncio.to_thread`), never on the event loop that serves every request.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from asci_core.errors import AsciError
from asci_core.events import build_succeeded_listeners
from asci_core.jsonlog import get_logger
from autobuild.service import Autobuild
from autobuild.store import FINISHED

log = get_logger("autobuild")
AUTOBUILD_KEY = web.AppKey("autobuild", Autobuild)
STATUSES = ("queued", "running", "succeeded", "failed", "skipped")
MAX_BUILD_ID = 2 ** 63 - 1  # SQLite's INTEGER
LOG_CHUNK = 1024 * 1024
MAX_WAIT_SECONDS = 60.0


def setup(app: web.Application, autobuild: Autobuild) -> None:
    app[AUTOBUILD_KEY] = autobuild
    # Listeners of other components (services rolling forward) subscribe on the application.
    autobuild.on_build_succeeded = build_succeeded_listeners(app)
    app.middlewares.append(unexpected_errors)
    app.router.add_post("/hooks/bitbucket", receive_webhook)
    # Bitbucket webhooks are set per repository: this URL selects the secret before anything is read.
    app.router.add_post("/hooks/bitbucket/{project}/{slug}", receive_webhook)
    app.router.add_get("/builds", list_builds)
    app.router.add_get("/builds/graph", show_graph)
    # Any segment: the id is checked by build_id(), so every bad id gets the same 404 as a missing build.
    app.router.add_get("/builds/{id}", show_build)
    app.router.add_get("/builds/{id}/log", build_log)
    app.router.add_post("/builds/{id}/retry", retry_build)
    app.router.add_get("/metrics", metrics)

    async def start(_: web.Application) -> None:
        await autobuild.start()

    async def stop(_: web.Application) -> None:
        await autobuild.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


@web.middleware
async def unexpected_errors(request: web.Request, handler) -> web.StreamResponse:
    """A bug answers one JSON line and is logged once; no traceback ever reaches the client."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (Exception, RecursionError) as exc:
        log.error("request failed", method=request.method, path=request.path[:200], exc_info=exc)
        return web.json_response({"error": "internal error (logged by the server)"}, status=500)


class _BodyRefused(AsciError):
    """A webhook body refused before it is read whole; answered with STATUS."""

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _BodyRefused(413, f"body larger than {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise _BodyRefused(413, f"body larger than {limit} bytes")
    except TimeoutError:
        raise _BodyRefused(408, f"body did not arrive within {timeout:g} seconds") from None
    return bytes(body)


async def receive_webhook(request: web.Request) -> web.Response:
    ab = request.app[AUTOBUILD_KEY]
    try:
        body = await _read_body(request, ab.settings.max_body_bytes, ab.settings.body_timeout_seconds)
    except _BodyRefused as refused:
        ab.metrics.deliveries.labels(str(refused.status)).inc()
        response = web.json_response({"status": "refused", "reason": refused.reason}, status=refused.status)
        # The rest of a refused body is not waited for: the connection ends with this answer.
        response.force_close()
        return response
    info = request.match_info
    repository = f"{info['project']}/{info['slug']}" if "project" in info else None
    answer = await ab.intake.receive(request.headers, body, repository)
    ab.metrics.deliveries.labels(str(answer.status)).inc()
    if answer.status == 401:
        # One line per refused signature: the alerts' webhook-probing rule counts these per address.
        log.warning("webhook refused", status=401, reason=answer.body.get("reason"), client_ip=request.remote)
    if answer.new_builds:
        ab.wake()
    return web.json_response(answer.body, status=answer.status)


def build_id(text: str) -> int | None:
    """An id as the API accepts it: ASCII digits within SQLite's integer range, else None.

    int() alone would take '١' (an Arabic-Indic one) as 1 and a 5,000-digit string as a
    ValueError only after Python's digit limit; neither reaches SQLite."""
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= MAX_BUILD_ID else None


def _not_found(request: web.Request) -> web.Response:
    text = request.match_info["id"]
    shown = text if build_id(text) is not None else "with that id"
    return web.json_response({"error": f"no build {shown}"}, status=404)


async def list_builds(request: web.Request) -> web.Response:
    ab = request.app[AUTOBUILD_KEY]
    status = request.query.get("status")
    if status and status not in STATUSES:
        return web.json_response({"error": f"status must be one of {', '.join(STATUSES)}"}, status=400)
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return web.json_response({"error": "limit must be a number"}, status=400)
    builds = await asyncio.to_thread(ab.store.list, request.query.get("repository"), status,
                                     max(1, min(limit, 1000)))
    return web.json_response({"builds": [b.to_json() for b in builds]})


async def show_build(request: web.Request) -> web.Response:
    """`?wait=SECONDS` (up to 60) answers when the build has ended or the time is up: no polling needed."""
    ab = request.app[AUTOBUILD_KEY]
    bid = build_id(request.match_info["id"])
    try:
        wait = min(float(request.query.get("wait", "0")), MAX_WAIT_SECONDS)
    except ValueError:
        return web.json_response({"error": "wait must be a number of seconds"}, status=400)
    if bid is None:
        build = None
    elif wait > 0:
        build = await ab.wait_finished(bid, wait)
    else:
        build = await asyncio.to_thread(ab.store.get, bid)
    return web.json_response(build.to_json()) if build else _not_found(request)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(LOG_CHUNK)
    except FileNotFoundError:
        return b""


async def build_log(request: web.Request) -> web.StreamResponse:
    ab = request.app[AUTOBUILD_KEY]
    bid = build_id(request.match_info["id"])
    if bid is None or await asyncio.to_thread(ab.store.get, bid) is None:
        return _not_found(request)
    path = ab.log_path(bid)
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    follow = request.query.get("follow") in ("1", "true", "yes")
    offset = 0
    while True:
        finished = not follow or (await asyncio.to_thread(ab.store.get, bid)).status in FINISHED
        # Read to the end of what is there (in bounded pieces), then stop or wait for more.
        while chunk := await asyncio.to_thread(_read_from, path, offset):
            offset += len(chunk)
            await response.write(chunk)
        if finished:
            break
        await asyncio.sleep(0.25)  # polling interval of a followed log, not synchronisation
    await response.write_eof()
    return response


async def retry_build(request: web.Request) -> web.Response:
    ab = request.app[AUTOBUILD_KEY]
    bid = build_id(request.match_info["id"])
    if bid is None:
        return _not_found(request)
    force = request.query.get("force") in ("1", "true", "yes")
    try:
        new_id = await ab.retry(bid, force)
    except KeyError:
        return _not_found(request)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    if new_id is None:
        return web.json_response({"build": None, "retry_of": bid, "status": "unchanged",
                                  "reason": f"build {bid} succeeded: a release is not built again unless forced "
                                            "(?force=1, asci builds retry --force)"}, status=200)
    return web.json_response({"build": new_id, "retry_of": bid}, status=202)


async def show_graph(request: web.Request) -> web.Response:
    graph = await asyncio.to_thread(request.app[AUTOBUILD_KEY].graph)
    return web.json_response({"children": graph.children, "parents": graph.parents, "cycles": graph.cycles,
                              "text": graph.render()})


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(request.app[AUTOBUILD_KEY].metrics.render)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
