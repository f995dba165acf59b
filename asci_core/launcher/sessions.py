"""Sessions: create, list, show, connect, stop — and reconcile with the engines at start.

`Launcher` is what the API and CLI call. Every method either does what it says or
raises a LauncherError subclass carrying the HTTP status; nothing is started when
a request is refused, and a record is written before a container exists.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import docker.errors

from asci_core.config_base import Secret
from asci_core.errors import AsciError
from asci_core.jsonlog import get_logger

from .directory import Directory, DirectoryError, LocalUsersFile, UnknownUser, Researcher
from .errors import (BadRequest, Conflict, LauncherError, LimitReached, NoCapacity, NodeUnavailable, NotAllowed,
                     SessionNotFound, StartFailed, UnknownEnvironment)
from .inventory import (HOLDING_STATES, SESSION_LABEL, Capacity, Reservation, free_gpu_ids, holds_resources,
                        list_session_containers, node_loads, render_device_for, reservation_from_container)
from .mount_templates import MountTemplateError
from .nodes import NodeDown, NodePool, default_nodes
from . import node_files, opengl, readiness
from .pull_account import pull
from .placement import Demand, NodeLoad, NoNodeFits, Ratios, backend_for, place
from .session_spec import (container_name, create_kwargs, ensure_session_network, first_password_file,
                           identity_problem, render_mounts, start_with_first_password)
from .settings import EnvironmentSettings, LauncherSettings, with_registry
from .store import ACTIVE, LOST, READY, STARTING, STOPPED, STOPPING, SessionRecord, SessionStore
from .usage import UsageSampler
from .vnc_endpoint import endpoint, publish_kwargs
from .vnc_password import new_password, set_password
from .image_reference import resolve

log = get_logger("launcher")

SESSION_ID = re.compile(r"[0-9a-f]{16}")
# A session still starting when create answered is watched this many ready_timeouts in the background.
WATCH_FACTOR = 10


@dataclass(frozen=True)
class Connection:
    """Where the proxy must connect, and the one-time password it must present."""

    session: str
    node: str
    address: str
    port: int
    password: Secret


@dataclass
class ReconcileReport:
    adopted: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class Launcher:
    def __init__(self, settings: LauncherSettings, store: SessionStore, directory: Directory, pool: NodePool,
                 scope: Mapping[str, str] | None = None, registry: Any | None = None):
        """SCOPE: labels put on every session container and required when listing them — a launcher
        sees only its own scope (tests use it to keep runs apart; production leaves it empty).
        REGISTRY: the facility registry (registry.service.RegistryAccess) with the pull credentials;
        `{registry}` in environments' images becomes its address."""
        if registry is not None:
            settings = replace(settings, environments=[with_registry(e, registry.address)
                                                       for e in settings.environments])
        self.registry = registry
        self.settings = settings
        self.store = store
        self.directory = directory
        self.pool = pool
        self.scope = dict(scope or {})
        self.ratios = Ratios(settings.cpu_overcommit, settings.memory_overcommit)
        self._admission = threading.Lock()
        self._inflight: set[str] = set()
        # Passwords given to sessions at start and not yet handed to anyone: memory only, each handed
        # out once by the first connect (a restarted launcher has none and sets a new one instead).
        self._first_passwords: dict[str, str] = {}
        # The OpenGL back end (and render device) of each session this launcher started: what the
        # record does not hold, for admission to count until the engine lists the container's labels.
        self._gl: dict[str, opengl.GlChoice] = {}
        # Per-session 3DX cookie copies live beside the session database.
        self.gl_state = Path(store.path).parent
        self.usage = UsageSampler(pool.names(), pool.call, pool.health.is_down, settings.usage_interval)
        # Long-lived: a survey that missed its deadline leaves its call running here, not in the request.
        # Sized for every API worker surveying every node at once (threads are made only when needed).
        self._survey_workers = ThreadPoolExecutor(max_workers=max(16, min(256, 8 * len(pool.names()))),
                                                  thread_name_prefix="asci-survey")
        # Ends the background readiness watches of sessions still starting when create answered.
        self._closing = threading.Event()

    @classmethod
    def from_config(cls, config: Any, scope: Mapping[str, str] | None = None) -> "Launcher":
        settings: LauncherSettings = config.launcher
        workdir = settings.workdir or Path(config.stack.state_dir) / "launcher"
        users_file = settings.users_file or workdir / "users.yaml"
        if settings.backend == "swarm":
            from .swarm import SwarmLauncher  # only a Swarm deployment needs it
            return SwarmLauncher(settings, SessionStore(workdir / "sessions.sqlite"), LocalUsersFile(users_file),
                                 scope, registry=pull_access(config))
        three_dx = getattr(getattr(config, "gpu", None), "three_dx", None)
        nodes = [opengl.local_defaults(n, three_dx, Path(config.stack.state_dir))
                 for n in default_nodes(settings.nodes, str(config.stack.docker.socket))]
        return cls(settings, SessionStore(workdir / "sessions.sqlite"), LocalUsersFile(users_file),
                   NodePool(nodes, settings.engine_timeout), scope, registry=pull_access(config))

    def close(self) -> None:
        self._closing.set()
        self.usage.close()
        self._survey_workers.shutdown(wait=False, cancel_futures=True)
        self.pool.close()
        self.store.close()

    # --- reading ---------------------------------------------------------

    def environments(self, user: str | None = None) -> list[EnvironmentSettings]:
        """All environments, or those USER may start."""
        if user is None:
            return list(self.settings.environments)
        who = self._user(user)
        return [e for e in self.settings.environments if e.allows(who.name, who.groups)]

    def list(self, user: str | None = None, include_stopped: bool = False, limit: int = 1000) -> list[SessionRecord]:
        states = (*ACTIVE, STOPPED) if include_stopped else ACTIVE
        return self.store.list(user=user, states=states, limit=limit)

    def show(self, session_id: str, as_user: str | None = None) -> SessionRecord:
        return self._owned(session_id, as_user)

    def nodes(self) -> list[NodeLoad]:
        """Each node's capacity, reservations and measured usage, as placement sees them now."""
        capacities, reservations, down = self._inventory()
        return node_loads(capacities, self._merge(reservations), down, self.usage.snapshot())

    # --- create ----------------------------------------------------------

    def create(self, user: str, environment: str) -> SessionRecord:
        env = self.settings.environment(environment) if isinstance(environment, str) else None
        if env is None:
            raise UnknownEnvironment(f"no environment named {environment!r}")
        who = self._user(user)
        if not env.allows(who.name, who.groups):
            raise NotAllowed(f"user {who.name!r} may not start {env.name!r}")
        try:
            mounts = render_mounts(env, who)
        except MountTemplateError as exc:
            log.warning("session refused", user=who.name, environment=env.name, reason=str(exc))
            raise NotAllowed(f"environment {env.name!r} cannot be started for {who.name!r}: {exc}") from None
        problem = identity_problem(env, who)
        if problem is not None:
            log.warning("session refused", user=who.name, environment=env.name, reason=problem)
            raise NotAllowed(f"environment {env.name!r} cannot be started for {who.name!r}: {problem}")
        demand = Demand(env.cpus, env.memory_bytes, env.gpus, env.node_labels, env.opengl, env.exclusive_gpus)
        capacities, seen, down = self._inventory()
        with self._admission:
            count = self.store.count_active(who.name)
            if count >= self.settings.max_sessions_per_user:
                raise LimitReached(f"user {who.name!r} already has {count} sessions "
                                   f"(at most {self.settings.max_sessions_per_user})")
            reservations = self._merge(seen)
            try:
                loads = node_loads(capacities, reservations, down, self.usage.snapshot())
                node = place(demand, loads, self.settings.placement, self.ratios)
            except NoNodeFits as exc:
                log.warning("session refused", user=who.name, environment=env.name, reason=str(exc))
                raise NoCapacity(str(exc)) from None
            gpu_ids = tuple(free_gpu_ids(capacities[node.name], reservations, node.name)[:env.gpus])
            backend = backend_for(node, demand)
            devices = (render_device_for(capacities[node.name], reservations, node.name, env.exclusive_gpus)
                       if backend == "egl" else ())
            now = time.time()
            record = SessionRecord(secrets.token_hex(8), who.name, env.name, node.name, "", STARTING, env.cpus,
                                   demand.memory, env.gpus, gpu_ids, now, now, now, "")
            if backend is not None:
                self._gl[record.id] = opengl.GlChoice(backend, devices, env.exclusive_gpus and bool(devices))
            self.store.insert(record)
            self._inflight.add(record.id)
        try:
            return self._start(record, env, who, mounts)
        finally:
            self._inflight.discard(record.id)

    def _start(self, record: SessionRecord, env: EnvironmentSettings, who: Researcher, mounts: list) -> SessionRecord:
        reservation = self._reservation(record)
        try:
            image = resolve(env.image, self.registry, self.settings.engine_timeout)
            kwargs = create_kwargs(env, who, reservation, mounts, self.settings.session_network, self.scope, image)
            kwargs, on_node = self._with_gl(kwargs, record, who, env.account)
            kwargs.update(publish_kwargs(self.pool.nodes[record.node].settings))
        except StartFailed as exc:
            self.store.update(record.id, state=STOPPED, reason=str(exc))
            self._gl.pop(record.id, None)
            log.warning("session failed to start", session=record.id, user=who.name, environment=env.name,
                        node=record.node, reason=str(exc))
            raise
        first = new_password() if env.account == "image" else None

        def run(client: Any) -> str:
            ensure_session_network(client, self.settings.session_network)
            pull(client, image, self.registry)
            args = on_node.before_create(client, kwargs, env.account) if on_node is not None else kwargs
            container = client.containers.create(**args)
            try:
                if on_node is not None:
                    on_node.before_start(client, container, image)
                if first is None:
                    container.start()
                else:
                    start_with_first_password(client, container, first, self.pool.timeout_for(record.node))
            except (docker.errors.APIError, OSError, opengl.GlUnavailable):
                container.remove(force=True)
                raise
            return container.id

        try:
            container_id = self.pool.call(record.node, run)
        except (NodeDown, docker.errors.APIError, LauncherError, opengl.GlUnavailable) as exc:
            reason = start_failure(exc)
            self.store.update(record.id, state=STOPPED, reason=reason)
            self._end_gl(record.id)
            if isinstance(exc, NodeDown):
                self._remove_quietly(record)  # the engine may have created it before it stopped answering
            log.warning("session failed to start", session=record.id, user=who.name, environment=env.name,
                        node=record.node, reason=reason)
            raise (NodeUnavailable if isinstance(exc, NodeDown) else StartFailed)(
                f"session for {env.name!r} could not start on {record.node}: {reason}") from None
        outcome = (self._await_ready(record.node, container_id, self.settings.ready_timeout)
                   if env.waits_for_vnc else readiness.Outcome(readiness.READY))
        if outcome.state == readiness.ENDED:
            self._end_started(record, container_id, outcome.reason)
            raise StartFailed(f"session for {env.name!r} could not start on {record.node}: {outcome.reason}")
        if first is not None:
            with self._admission:
                self._first_passwords[record.id] = first
        if outcome.state == readiness.WAITING:
            log.info("session still starting", session=record.id, user=who.name, environment=env.name,
                     node=record.node, container=container_id[:12], waited_seconds=self.settings.ready_timeout)
            record = self.store.update(record.id, container_id=container_id)
            threading.Thread(target=self._watch, args=(record, container_id), daemon=True,
                             name=f"asci-ready-{record.id}").start()
            return record
        log.info("session started", session=record.id, user=who.name, environment=env.name, node=record.node,
                 container=container_id[:12])
        return self.store.update(record.id, state=READY, container_id=container_id)

    # --- readiness -------------------------------------------------------

    def _await_ready(self, node: str, container_id: str, timeout: float) -> readiness.Outcome:
        """The session's first of "VNC answers" and "container ended" within TIMEOUT; WAITING when
        neither came or the node stopped answering meanwhile (reconcile then decides)."""
        settings = self.pool.nodes[node].settings
        try:
            return self.pool.call(node, lambda c: readiness.wait_ready(
                c, container_id, settings, self.settings.session_network, timeout, self._closing.is_set))
        except (NodeDown, docker.errors.APIError):
            return readiness.Outcome(readiness.WAITING)

    def _watch(self, record: SessionRecord, container_id: str) -> None:
        """In the background: a session create answered as starting turns ready when its port answers,
        or is closed with its reason when it ends. Bounded; past it, reconcile decides."""
        outcome = self._await_ready(record.node, container_id, WATCH_FACTOR * self.settings.ready_timeout)
        if self._closing.is_set():
            return  # the launcher is closing: the next one's reconcile decides
        current = self.store.get(record.id)
        if current is None or current.state != STARTING:
            return
        if outcome.state == readiness.READY:
            self.store.update(record.id, state=READY, reason="")
            log.info("session started", session=record.id, user=record.user, environment=record.environment,
                     node=record.node, container=container_id[:12])
        elif outcome.state == readiness.ENDED:
            self._end_started(record, container_id, outcome.reason)

    def _end_started(self, record: SessionRecord, container_id: str, reason: str) -> None:
        """A session that ended before it was ready: its container removed, its record closed with REASON."""
        with self._admission:
            self._first_passwords.pop(record.id, None)
        self._remove_quietly(replace(record, container_id=container_id))
        self.store.update(record.id, state=STOPPED, container_id=container_id, reason=reason)
        self._end_gl(record.id)
        log.warning("session failed to start", session=record.id, user=record.user, environment=record.environment,
                    node=record.node, reason=reason)

    # --- stop ------------------------------------------------------------

    def stop(self, session_id: str, as_user: str | None = None, reason: str = "stopped by its user") -> SessionRecord:
        """Stop and remove the session's container; stopping a stopped session changes nothing."""
        record = self._owned(session_id, as_user)
        if record.state == STOPPED:
            return record
        self.store.update(record.id, state=STOPPING, reason=reason)
        with self._admission:
            self._first_passwords.pop(record.id, None)
        try:
            self.pool.call(self._engine_of(record), lambda c: self._remove(c, record))
        except NodeDown as exc:
            raise NodeUnavailable(f"session {record.id} is being stopped, but {exc}; "
                                  f"it is finished when the node answers again") from None
        self._end_gl(record.id)
        log.info("session stopped", session=record.id, user=record.user, environment=record.environment,
                 node=record.node, reason=reason)
        return self.store.update(record.id, state=STOPPED, reason=reason)

    def _remove(self, client: Any, record: SessionRecord) -> None:
        target = record.container_id or container_name(record.id)
        try:
            client.api.stop(target, timeout=self.settings.stop_timeout)
        except docker.errors.APIError as exc:
            if exc.status_code not in (304, 404, 409):
                raise
        try:
            client.api.remove_container(target, force=True)
        except docker.errors.APIError as exc:
            # 404: already gone; 409: removal already in progress.
            if exc.status_code not in (404, 409):
                raise

    def _engine_of(self, record: SessionRecord) -> str:
        """The pool entry that can stop RECORD's session."""
        return record.node

    def _remove_quietly(self, record: SessionRecord) -> None:
        try:
            self.pool.call(self._engine_of(record), lambda c: self._remove(c, record))
        except (NodeDown, docker.errors.APIError):
            pass  # reconciliation removes it: its record is closed

    # --- connect ---------------------------------------------------------

    def connect(self, session_id: str, as_user: str | None = None) -> Connection:
        """Set a fresh one-time VNC password in the session; where and how the proxy reaches it."""
        record = self._owned(session_id, as_user)
        if record.state != READY:
            raise Conflict(f"session {record.id} is {record.state}, not ready")
        with self._admission:
            first = self._first_passwords.pop(record.id, None)
        password = first or new_password()
        env = self.settings.environment(record.environment)
        by_image = env is not None and env.account == "image"
        who = self._user(record.user) if by_image else None

        def run(client: Any) -> tuple[str, int]:
            timeout = self.pool.timeout_for(record.node)
            if first is not None:
                pass  # the session started with it: nobody has seen it yet
            elif who is None:
                set_password(client, record.container_id, password, timeout)
            else:
                set_password(client, record.container_id, password, timeout, user=f"{who.uid}:{who.gid}",
                             after=first_password_file(who))
            attrs = client.api.inspect_container(record.container_id)
            return endpoint(self.pool.nodes[record.node].settings, attrs, self.settings.session_network)

        try:
            address, port = self.pool.call(record.node, run)
        except NodeDown as exc:
            raise NodeUnavailable(str(exc)) from None
        except docker.errors.APIError as exc:
            raise StartFailed(f"session {record.id} cannot be reached: {exc.explanation or exc}") from None
        except StartFailed as exc:
            raise StartFailed(f"session {record.id}: {exc}") from None
        if not address:
            where = ("no published VNC port" if self.pool.nodes[record.node].settings.vnc_address == "published"
                     else f"no address on {self.settings.session_network}")
            raise StartFailed(f"session {record.id} has {where}")
        self.store.update(record.id, last_activity=time.time())
        log.info("session connect", session=record.id, user=record.user, node=record.node)
        return Connection(record.id, record.node, address, port, Secret(password, f"session {record.id}"))

    # --- activity and culling --------------------------------------------

    def touch(self, session_id: str, when: float | None = None) -> None:
        """A viewer is connected (the proxy reports it): the idle clock restarts."""
        record = self._owned(session_id, None)
        self.store.update(record.id, last_activity=when if when is not None else time.time())

    def cull(self, now: float | None = None) -> list[tuple[str, str]]:
        """Stop ready sessions past their environment's maximum lifetime or idle timeout, and those
        still starting (a desktop that never listened) by the same clocks.

        Returns (session, reason) for each one stopped. A session whose environment is no longer
        configured keeps running until reconciliation decides; a node that does not answer is
        left for the next pass."""
        now = time.time() if now is None else now
        stopped: list[tuple[str, str]] = []
        for record in self.store.list(states=(STARTING, READY), limit=1_000_000):
            env = self.settings.environment(record.environment)
            if env is None or record.id in self._inflight:
                continue
            reason = None
            if env.max_lifetime is not None and now - record.created_at >= env.max_lifetime:
                reason = f"maximum lifetime reached ({env.max_lifetime:g} s)"
            elif env.idle_timeout is not None and now - record.last_activity >= env.idle_timeout:
                reason = f"idle for {env.idle_timeout:g} s"
            if reason is None:
                continue
            try:
                self.stop(record.id, reason=reason)
            except NodeUnavailable:
                continue
            stopped.append((record.id, reason))
        return stopped

    # --- reconcile -------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Bring records and containers into agreement on every node.

        The rule: a running session container with no record is adopted when its labels are
        complete, its user is known and its environment is still configured; any other
        unrecorded one is removed (an environment dropped from the configuration takes its
        sessions with it). A container whose record is stopped or stopping, or that exited, is
        removed and its record closed. A record whose container vanished is closed. Records on a
        node that does not answer are marked lost, and become ready again when it answers.
        """
        report = ReconcileReport()
        for node in self.pool.names():
            try:
                containers = self.pool.call(node, lambda c: list_session_containers(c, self.scope))
            except NodeDown as exc:
                for record in self.store.list(states=(STARTING, READY, STOPPING), limit=1_000_000):
                    if record.node == node and record.id not in self._inflight:
                        self.store.update(record.id, state=LOST, reason=f"node {node} is not answering: {exc.reason}")
                        report.lost.append(record.id)
                        log.warning("session lost", session=record.id, user=record.user, node=node, reason=exc.reason)
                continue
            self._sweep_readers(node)
            seen: set[str] = set()
            for summary in containers:
                self._reconcile_container(node, summary, report, seen)
            for record in self.store.active():
                if record.node == node and record.id not in seen and record.id not in self._inflight:
                    self.store.update(record.id, state=STOPPED, reason="container vanished")
                    report.closed.append(record.id)
                    log.warning("session closed", session=record.id, user=record.user, node=node,
                                reason="container vanished")
        with self._admission:
            for session_id in report.closed:
                self._first_passwords.pop(session_id, None)
                self._gl.pop(session_id, None)
        # Cookie copies of sessions that ended while nobody was looking (closed above, or stopped
        # before a crash): removed, so a copy never outlives its session.
        opengl.sweep(self.gl_state, self._sessions_holding_cookies)
        return report

    def _reconcile_container(self, node: str, summary: dict, report: ReconcileReport, seen: set[str]) -> None:
        found = reservation_from_container(node, summary)
        session_id = (summary.get("Labels") or {}).get(SESSION_LABEL, "")
        record = self.store.get(session_id) if SESSION_ID.fullmatch(session_id) else None
        holding = summary.get("State") in HOLDING_STATES
        if record is not None and record.node != node:
            # Two node entries reaching one engine, most likely: removing it here would end a session
            # that is fine where it is recorded.
            log.warning("session container on an unexpected node left alone", session=record.id,
                        recorded_node=record.node, node=node)
            return
        if record is not None:
            seen.add(record.id)
        if record is None:
            if found is not None and holding and self._adoptable(found):
                now = time.time()
                # The container's own creation time: adoption must not restart the maximum lifetime.
                created = float(summary.get("Created") or now)
                self.store.insert(SessionRecord(found.session, found.user, found.environment, node,
                                                found.container_id, READY, found.cpus, found.memory, found.gpus,
                                                found.gpu_ids, created, now, now, "adopted at start"))
                seen.add(found.session)
                report.adopted.append(found.session)
                log.info("session adopted", session=found.session, user=found.user, node=node)
                return
            self._remove_container(node, summary, report, "no record of it")
            return
        if record.state in (STOPPED, STOPPING) or not holding:
            # The reason (exit code, last log line) is read before the container and its log go.
            reason = record.reason if record.state in (STOPPED, STOPPING) else self._ended_reason(node, summary)
            self._remove_container(node, summary, report, f"record {record.state}, container {summary.get('State')}")
            if record.state != STOPPED:
                self.store.update(record.id, state=STOPPED, reason=reason)
                report.closed.append(record.id)
            return
        if record.state in (STARTING, LOST) and record.id not in self._inflight:
            if record.state == STARTING and not self._answers(node, record, summary.get("Id", "")):
                return  # its desktop is not listening yet: still starting
            self.store.update(record.id, state=READY, container_id=summary.get("Id", ""), reason="")
            report.recovered.append(record.id)

    def _ended_reason(self, node: str, summary: dict) -> str:
        container_id = summary.get("Id", "")
        try:
            return self.pool.call(node, lambda c: readiness.ended_reason(c, container_id))
        except (NodeDown, docker.errors.APIError):
            return f"container {summary.get('State')}"

    def _answers(self, node: str, record: SessionRecord, container_id: str) -> bool:
        """Whether a starting session is ready: its VNC port answers, or its environment waits for none."""
        env = self.settings.environment(record.environment)
        if env is None or not env.waits_for_vnc:
            return True
        settings = self.pool.nodes[node].settings
        try:
            outcome = self.pool.call(node, lambda c: readiness.check(c, container_id, settings,
                                                                     self.settings.session_network))
        except (NodeDown, docker.errors.APIError):
            return False
        return outcome.state == readiness.READY

    def _adoptable(self, found: Reservation) -> bool:
        if not SESSION_ID.fullmatch(found.session) or self.settings.environment(found.environment) is None:
            return False
        try:
            self.directory.lookup(found.user)
        except (UnknownUser, DirectoryError):
            return False
        return True

    def _remove_container(self, node: str, summary: dict, report: ReconcileReport, why: str) -> None:
        container_id = summary.get("Id", "")
        try:
            self.pool.call(node, lambda c: c.api.remove_container(container_id, force=True))
        except docker.errors.NotFound:
            pass
        except (NodeDown, docker.errors.APIError) as exc:
            log.warning("session container not removed", node=node, container=container_id[:12], reason=str(exc))
            return
        report.removed.append(container_id)
        log.info("session container removed", node=node, container=container_id[:12], reason=why)

    # --- helpers ---------------------------------------------------------

    def _user(self, name: str) -> Researcher:
        try:
            return self.directory.lookup(name)
        except UnknownUser:
            # Not "unknown": the caller learns nothing about who exists.
            raise NotAllowed(f"user {name!r} may not start sessions") from None
        except DirectoryError as exc:
            raise NodeUnavailable(f"the user directory is unusable: {exc}") from None

    def _owned(self, session_id: str, as_user: str | None) -> SessionRecord:
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            raise BadRequest("a session id is 16 hexadecimal digits")
        record = self.store.get(session_id)
        if record is None or (as_user is not None and record.user != as_user):
            raise SessionNotFound(f"no session {session_id}")
        return record

    def _inventory(self) -> tuple[dict[str, Capacity], dict[str, Reservation], dict[str, str]]:
        """Capacity and engine-reported reservations of every answering node, and why the others are down.

        Nodes that last failed by timing out are not asked (the prober retries them); the others
        are asked at once, each within its own timeout: one that misses it is marked down and the
        answer goes on without it, its call left to finish on its own."""
        self.usage.start()

        started: dict[str, float] = {}

        def survey(name: str) -> tuple[Capacity | None, list[Reservation], str | None]:
            started[name] = time.monotonic()
            try:
                capacity = self.pool.capacity(name)
                listed = self.pool.call(name, lambda c: list_session_containers(c, self.scope))
            except NodeDown as exc:
                return None, [], exc.reason
            except docker.errors.APIError as exc:
                return None, [], f"engine error: {exc.explanation or exc}"
            found = (reservation_from_container(name, s) for s in listed)
            return capacity, [r for r in found if r is not None and holds_resources(r)], None

        capacities: dict[str, Capacity] = {}
        down: dict[str, str] = {}
        seen: dict[str, Reservation] = {}
        asked: dict[str, Future] = {}
        for name in self.pool.names():
            if self.pool.health.avoid(name):
                down[name] = self.pool.health.describe(name) or "not answering"
            else:
                asked[name] = self._survey_workers.submit(survey, name)
        for name, future in asked.items():
            timeout = self.pool.timeout_for(name)
            try:
                capacity, found, why = self._within_deadline(future, started, name, timeout)
            except FutureTimeout:
                why = f"did not answer within {timeout:g} s"
                self.pool.mark_down(name, why, slow=True)
                down[name] = why
                continue
            if why is not None:
                down[name] = why
                continue
            capacities[name] = capacity
            seen.update((r.session, r) for r in found)
        return capacities, seen, down

    @staticmethod
    def _within_deadline(future: Future, started: dict[str, float], name: str, timeout: float) -> Any:
        """FUTURE's result, or FutureTimeout once its call has run TIMEOUT seconds. Time spent queued
        behind other requests' surveys is not the node's: the deadline starts with the call."""
        while True:
            begun = started.get(name)
            remaining = timeout if begun is None else begun + timeout - time.monotonic()
            try:
                return future.result(timeout=max(0.0, remaining))
            except FutureTimeout:
                if name in started and time.monotonic() >= started[name] + timeout:
                    raise

    def _merge(self, seen: dict[str, Reservation]) -> list[Reservation]:
        """Engine-reported reservations plus recorded sessions the engines did not show yet
        (being created now): admission never counts an in-flight session as free room."""
        merged = dict(seen)
        for record in self.store.active():
            if record.id not in merged:
                merged[record.id] = self._reservation(record)
        return list(merged.values())

    def _reservation(self, record: SessionRecord) -> Reservation:
        gl = self._gl.get(record.id)
        return Reservation(record.id, record.node, record.user, record.environment, record.cpus, record.memory,
                           record.gpus, record.gpu_ids, opengl=gl.backend if gl else "",
                           render_devices=gl.devices if gl else (), render_exclusive=gl.exclusive if gl else False)

    # --- OpenGL back ends ------------------------------------------------

    def _with_gl(self, kwargs: dict[str, Any], record: SessionRecord, who: Researcher,
                 account: str) -> tuple[dict[str, Any], opengl.NodeSteps | None]:
        """KWARGS with the session's OpenGL back end on its own node (nothing when it has none), and
        what is left to do with the node's engine at hand (a remote node's cookie or devices)."""
        choice = self._gl.get(record.id)
        if choice is None:
            return kwargs, None
        node = self.pool.nodes[record.node].settings
        try:
            access = opengl.grant(choice, node, record.id, who.uid, who.gid, self.gl_state)
            return opengl.apply(kwargs, access, account), access.on_node
        except opengl.GlUnavailable as exc:
            raise StartFailed(str(exc)) from None

    def _sweep_readers(self, node: str) -> None:
        """Node-file readers (opengl on remote nodes) a launcher left behind by stopping mid-read."""
        try:
            removed = self.pool.call(node, node_files.sweep_readers)
        except (NodeDown, docker.errors.APIError) as exc:
            log.warning("node file readers not swept", node=node, reason=str(exc))
            return
        if removed:
            log.info("node file readers removed", node=node, count=removed)

    def _sessions_holding_cookies(self) -> set[str]:
        with self._admission:
            starting = set(self._inflight)
        return starting | {r.id for r in self.store.active()}

    def _end_gl(self, session_id: str) -> None:
        """The session's 3DX cookie copy removed: nothing opens the 3DX with it any more."""
        opengl.revoke(self.gl_state, session_id)
        with self._admission:
            self._gl.pop(session_id, None)


def pull_access(config: Any) -> Any | None:
    """The facility registry as sessions reach it: launcher.registry_username/password when set
    (a pull-only account), else the registry's own credentials; None when it is not configured."""
    from registry.service import registry_access  # the registry package reads the whole config
    try:
        access = registry_access(config)
    except AsciError:
        return None
    launcher = config.launcher
    if launcher.registry_username is not None and launcher.registry_password is not None:
        access = replace(access, username=launcher.registry_username, password=launcher.registry_password)
    return access


def start_failure(exc: BaseException, who: str = "node") -> str:
    """Why a session did not start, in one line; WHO names what stopped answering (a node, Swarm's manager)."""
    if isinstance(exc, NodeDown):
        return f"{who} not answering ({exc.reason})"
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)[:300]
    return str(exc)
