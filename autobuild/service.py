"""Autobuild as a running service: the store, the intake, and the worker pool.

Workers take builds from SQLite (so a restart resumes exactly where the last
process stopped), run the pipeline in a thread, and decide what follows:
retry with backoff, fail and tell Slack, or succeed and queue the children.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

from asci_core.config import Config
from asci_core.jsonlog import get_logger
from asci_core.stack.process import last_lines
from autobuild.buildlog import BuildLog
from autobuild.errors import BuildError, StageError, TransientError
from autobuild.inheritance import Graph
from autobuild.intake import Intake
from autobuild.metrics import BuildMetrics
from autobuild.pipeline import Pipeline, StageRecord, image_repository
from autobuild.slack import SlackNotifier
from autobuild.store import (FAILED, FINISHED, QUEUED, SUCCEEDED, Build, NewBuild, Store, claim_next, insert_builds,
                             requeue_interrupted, retry_build, set_fields, skip_dependents)
from registry.service import registry_access

log = get_logger("autobuild")


def workdir_of(config: Config) -> Path:
    return config.autobuild.workdir or config.stack.state_dir / "autobuild"


class Autobuild:
    def __init__(self, config: Config):
        self.config = config
        self.settings = config.autobuild
        self.workdir = workdir_of(config)
        self.store = Store(self.workdir / "autobuild.db")
        public = self.settings.public_url or f"http://{config.server.host}:{config.server.port}"
        self.slack = SlackNotifier(config.slack.webhook_url, notify_success=config.slack.notify_success,
                                   public_url=public)
        self.intake = Intake(self.settings, self.store, on_tag_moved=self.slack.tag_moved)
        self.metrics = BuildMetrics(self.store.counts)
        self.access = registry_access(config)
        self.repositories = {r.name: r for r in self.settings.repositories}
        self.pipeline = Pipeline(workdir=self.workdir, access=self.access, engine_socket=config.stack.docker.socket,
                                 repositories=self.repositories, hosts={h.name: h for h in self.settings.hosts},
                                 succeeded_tags=self.store.succeeded_tags)
        self._wake = asyncio.Event()
        # Replaced each time a build ends, so `GET /builds/{id}?wait=` sleeps until then instead of polling.
        self._finished = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self._stopping = False
        # Called on the event loop as listener(build, image, digest) after a build succeeded; must not block.
        self.on_build_succeeded: list[Callable[[Build, str, str], None]] = []

    def log_path(self, build_id: int) -> Path:
        return self.workdir / "logs" / f"{build_id}.log"

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        resumed = await self._write(requeue_interrupted())
        if resumed:
            log.info("resuming builds interrupted by a restart", builds=resumed)
            for build_id in resumed:
                BuildLog(self.log_path(build_id)).write("==> resumed after a restart of autobuild")
        if self.settings.paused:
            log.warning("autobuild is paused: webhooks are queued, no build starts", queued=self.store.counts().get(QUEUED, 0))
            return
        self._workers = [asyncio.create_task(self._worker(i), name=f"autobuild-worker-{i}")
                         for i in range(self.settings.concurrency)]
        log.info("workers started", concurrency=self.settings.concurrency,
                 repositories=len(self.repositories))

    async def stop(self) -> None:
        """Stop taking work and wait for running builds; they are resumed at the next start if cut short."""
        self._stopping = True
        self._wake.set()
        if self._workers:
            await asyncio.wait(self._workers, timeout=self.config.server.shutdown_timeout)
            for task in self._workers:
                task.cancel()
        await self.slack.drain()
        self.store.close()

    def wake(self) -> None:
        self._wake.set()

    def _announce_finished(self) -> None:
        event, self._finished = self._finished, asyncio.Event()
        event.set()

    async def wait_finished(self, build_id: int, timeout: float) -> Build | None:
        """The build once it has ended, or as it is when TIMEOUT runs out (None if there is no such build)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._finished  # taken before the read: an end between read and wait is not missed
            build = await asyncio.to_thread(self.store.get, build_id)
            left = deadline - loop.time()
            if build is None or build.status in FINISHED or left <= 0:
                return build
            try:
                await asyncio.wait_for(event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _write(self, op):
        return await asyncio.wrap_future(self.store.submit(op))

    # --- work -----------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while not self._stopping:
            build_id = await self._write(claim_next(time.time()))
            if build_id is None:
                self._wake.clear()
                try:
                    # Also wake periodically: retries become due with time, not with events.
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
                continue
            build = await asyncio.to_thread(self.store.get, build_id)
            try:
                await self._run(build)
            except Exception as exc:  # a bug in follow-up handling must not kill the worker
                log.error("worker error", build_id=build_id, exc_info=exc)
            self._wake.set()

    async def _run(self, build: Build) -> None:
        blog = BuildLog(self.log_path(build.id))
        blog.write(f"==> build {build.id}: {build.repository} {build.tag} ({build.commit_sha}), "
                   f"attempt {build.attempts}, trigger {build.trigger}")
        loop = asyncio.get_running_loop()

        def on_stage(stages: list[StageRecord]) -> None:
            snapshot = [s.to_json() for s in stages]
            loop.call_soon_threadsafe(lambda: self.store.submit(set_fields(build.id, stages=snapshot)))

        log.info("build started", build_id=build.id, repository=build.repository, tag=build.tag, attempt=build.attempts)
        try:
            result = await asyncio.to_thread(self.pipeline.run, build, blog, on_stage)
        except TransientError as exc:
            await self._transient(build, exc, blog)
        except BuildError as exc:
            await self._failed(build, exc, blog)
        else:
            for stage in result.stages:
                if stage.finished_at:
                    self.metrics.stage_seconds.labels(stage.name).observe(stage.finished_at - stage.started_at)
            await self._write(set_fields(build.id, status=SUCCEEDED, digest=result.digest, parents=result.parents,
                                         error=None, failed_stage=None, finished_at=time.time(),
                                         commit_sha=result.commit or build.commit_sha, tag_object=result.tag_object,
                                         stages=[s.to_json() for s in result.stages]))
            self._announce_finished()
            self.metrics.builds.labels(SUCCEEDED).inc()
            blog.write(f"==> succeeded: {result.digest}")
            image = f"{self.access.address}/{image_repository(self.repositories[build.repository])}"
            # One line per finished build, in the shape the autobuild ingest pipeline lifts into build.*.
            log.info("build finished", build_id=build.id, repository=build.repository, tag=build.tag,
                     outcome="success", image=image, commit=build.commit_sha, digest=result.digest,
                     duration_s=round(time.time() - build.started_at, 3), trigger=build.trigger)
            self.slack.build_succeeded(build, result.digest, image)
            for listener in self.on_build_succeeded:
                try:
                    listener(build, image, result.digest)
                except Exception as exc:  # a listener's bug must not fail a finished build
                    log.error("build listener failed", build_id=build.id, exc_info=exc)
            if build.trigger != "rebuild":
                await self._queue_children(build, blog)
        finally:
            blog.close()

    async def _transient(self, build: Build, exc: StageError, blog: BuildLog) -> None:
        if build.attempts >= self.settings.max_attempts:
            blog.write(f"==> giving up after {build.attempts} attempts")
            await self._failed(build, exc, blog)
            return
        delay = min(self.settings.retry_base_seconds * 2 ** (build.attempts - 1), self.settings.retry_max_seconds)
        await self._write(set_fields(build.id, status=QUEUED, not_before=time.time() + delay, error=str(exc),
                                     failed_stage=exc.stage))
        self.metrics.retries.inc()
        blog.write(f"==> {exc.stage} will be retried in {delay:.1f}s (attempt {build.attempts} of "
                   f"{self.settings.max_attempts})")
        log.warning("build will be retried", build_id=build.id, stage=exc.stage, error=str(exc), delay=delay)

    async def _failed(self, build: Build, exc: StageError, blog: BuildLog) -> None:
        await self._write(set_fields(build.id, status=FAILED, error=str(exc), failed_stage=exc.stage,
                                     finished_at=time.time()))
        skipped = await self._write(skip_dependents(build.id, f"build {build.id} it depends on failed"))
        self._announce_finished()
        self.metrics.builds.labels(FAILED).inc()
        blog.write(f"==> failed in {exc.stage}: {exc}")
        if skipped:
            blog.write(f"==> dependent rebuilds skipped: {skipped}")
        log.error("build finished", build_id=build.id, repository=build.repository, tag=build.tag,
                  outcome="failure", commit=build.commit_sha, stage=exc.stage, error=str(exc),
                  duration_s=round(time.time() - (build.started_at or time.time()), 3), trigger=build.trigger)
        tail = await asyncio.to_thread(last_lines, self.log_path(build.id), 15)
        self.slack.build_failed(build, exc.stage, str(exc), tail)

    # --- inheritance ------------------------------------------------------------------

    def graph(self) -> Graph:
        latest = self.store.latest_succeeded()
        images = {name: f"{self.access.address}/{image_repository(repo)}" for name, repo in self.repositories.items()}
        return Graph.build(images, {name: [p["image"] for p in b.parents] for name, b in latest.items() if name in images})

    async def _queue_children(self, root: Build, blog: BuildLog) -> None:
        graph = await asyncio.to_thread(self.graph)
        for cycle in graph.cycles:
            blog.write(f"==> inheritance cycle, not rebuilt: {' -> '.join(cycle)}")
            log.warning("inheritance cycle", cycle=cycle)
        order = graph.descendants_in_order(root.repository)
        if not order:
            return
        latest = await asyncio.to_thread(self.store.latest_succeeded)
        tag_of = {root.repository: root.tag}
        key_of: dict[str, str] = {}
        new: list[NewBuild] = []
        for name in order:
            base = latest[name]
            repo = self.repositories[name]
            args = dict(base.build_args)
            # A child that takes its parent's tag from an ARG gets the parent's new tag.
            for parent in graph.parents[name]:
                parent_image = f"{self.access.address}/{image_repository(self.repositories[parent])}"
                for line in base.parents:
                    if line["image"].startswith(parent_image + ":") and line["tag_arg"]:
                        args[line["tag_arg"]] = tag_of.get(parent, latest[parent].tag)
            key = f"rebuild:{name}:{base.tag}:{root.id}"
            deps = tuple(key_of[p] for p in graph.parents[name] if p in key_of)
            new.append(NewBuild(key, name, image_repository(repo), base.tag, base.commit_sha, "rebuild",
                                triggered_by=root.id, build_args=args, depends_on=deps))
            key_of[name] = key
            tag_of[name] = base.tag
        ids = await self._write(insert_builds(new))
        queued = [ids[b.dedupe_key][0] for b in new]
        blog.write(f"==> children queued for rebuild: {', '.join(f'{b.repository} #{i}' for b, i in zip(new, queued))}")
        log.info("children queued", build_id=root.id, children=queued)
        self._wake.set()

    async def retry(self, build_id: int, force: bool = False) -> int | None:
        """A new build of a finished one; None when it succeeded and FORCE is not set (a release stays as built)."""
        new_id = await self._write(retry_build(build_id, force))
        if new_id is not None:
            self._wake.set()
        return new_id
