"""HTTP face of autobuild: the webhook receiver and the read-only builds API.

Handlers stay thin: they translate HTTP to Intake/Store calls and back. Work is
triggered only by POST; logs are read by GET, resumably, so a reconnecting
browser never starts anything again.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from asci_core.jsonlog import get_logger
from autobuild.service import Autobuild
from autobuild.store import FINISHED

log = get_logger("autobuild")

AUTOBUILD_KEY = web.AppKey("autobuild", Autobuild)
STATUSES = ("queued", "running", "succeeded", "failed", "skipped")


def setup(app: web.Application, autobuild: Autobuild) -> None:
    app[AUTOBUILD_KEY] = autobuild
    app.router.add_post("/hooks/bitbucket", receive_webhook)
    app.router.add_get("/builds", list_builds)
    app.router.add_get("/builds/graph", show_graph)
    app.router.add_get("/builds/{id:\\d+}", show_build)
    app.router.add_get("/builds/{id:\\d+}/log", build_log)
    app.router.add_post("/builds/{id:\\d+}/retry", retry_build)
    app.router.add_get("/metrics", metrics)

    async def start(_: web.Application) -> None:
        await autobuild.start()

    async def stop(_: web.Application) -> None:
        await autobuild.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


async def receive_webhook(request: web.Request) -> web.Response:
    ab = request.app[AUTOBUILD_KEY]
    limit = ab.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        ab.metrics.deliveries.labels("413").inc()
        return web.json_response({"status": "refused", "reason": f"body larger than {limit} bytes"}, status=413)
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            ab.metrics.deliveries.labels("413").inc()
            return web.json_response({"status": "refused", "reason": f"body larger than {limit} bytes"}, status=413)
    answer = await ab.intake.receive(request.headers, bytes(body))
    ab.metrics.deliveries.labels(str(answer.status)).inc()
    if answer.status == 401:
        # One line per refused signature: the alerts' webhook-probing rule counts these per address.
        log.warning("webhook refused", status=401, reason=answer.body.get("reason"), client_ip=request.remote)
    if answer.new_builds:
        ab.wake()
    return web.json_response(answer.body, status=answer.status)


def _build_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _not_found(build_id: int) -> web.Response:
    return web.json_response({"error": f"no build {build_id}"}, status=404)


async def list_builds(request: web.Request) -> web.Response:
    ab = request.app[AUTOBUILD_KEY]
    status = request.query.get("status")
    if status and status not in STATUSES:
        return web.json_response({"error": f"status must be one of {', '.join(STATUSES)}"}, status=400)
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return web.json_response({"error": "limit must be a number"}, status=400)
    builds = ab.store.list(request.query.get("repository"), status, max(1, min(limit, 1000)))
    return web.json_response({"builds": [b.to_json() for b in builds]})


async def show_build(request: web.Request) -> web.Response:
    build = request.app[AUTOBUILD_KEY].store.get(_build_id(request))
    return web.json_response(build.to_json()) if build else _not_found(_build_id(request))


async def build_log(request: web.Request) -> web.StreamResponse:
    ab = request.app[AUTOBUILD_KEY]
    build_id = _build_id(request)
    if ab.store.get(build_id) is None:
        return _not_found(build_id)
    path = ab.log_path(build_id)
    follow = request.query.get("follow") in ("1", "true", "yes")
    if not follow:
        text = path.read_text(errors="replace") if path.exists() else ""
        return web.Response(text=text, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    offset = 0
    while True:
        finished = ab.store.get(build_id).status in FINISHED
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                offset += len(chunk)
                await response.write(chunk)
        if finished:
            break
        await asyncio.sleep(0.25)
    await response.write_eof()
    return response


async def retry_build(request: web.Request) -> web.Response:
    ab = request.app[AUTOBUILD_KEY]
    build_id = _build_id(request)
    try:
        new_id = await ab.retry(build_id)
    except KeyError:
        return _not_found(build_id)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    return web.json_response({"build": new_id, "retry_of": build_id}, status=202)


async def show_graph(request: web.Request) -> web.Response:
    graph = request.app[AUTOBUILD_KEY].graph()
    return web.json_response({"children": graph.children, "parents": graph.parents, "cycles": graph.cycles,
                              "text": graph.render()})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[AUTOBUILD_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
