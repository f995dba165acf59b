"""Sessions as Docker Swarm services (`launcher.backend: swarm`).

ASCI still decides *whether* a session may start: the user's limit and admission
against each node's capacity (configured in `launcher.nodes` under the Swarm node's
hostname, else what Swarm reports — which on shared machines is the whole host, so
configure it). Swarm decides *where*: the service carries the environment's CPU and
memory as reservations and limits, and its node labels as placement constraints
(`node.labels.KEY==VALUE`). When Swarm cannot place it, Swarm's own reason (the
task's `Err`, e.g. "no suitable node (insufficient resources on 3 nodes)") is the
answer and the service is removed.

A session is one service with one replica and `restart_policy: none` (a desktop that
exits is over, not restarted elsewhere with the user's work gone), no published
ports (ingress needs IPVS and the proxy reaches the task directly), labelled like an
engine-backend container. The record's `node` is where Swarm runs the task, its
`container_id` the service's id. `connect` runs the image's password command in the
task's container, which needs that node's engine: list it in `launcher.nodes`.

The desktop images (`account: image`) run as services too. Their first VNC password cannot
arrive on stdin as with the engines backend (a service has none), and a per-session Docker
secret — in-memory in the container — would still sit in the managers' Raft store on disk
until removed, while the password must never reach a record on disk. So the entry point makes
up a first password nobody knows, and the first `connect` sets a fresh one through the image's
password command, once that first one exists (one exec more at the first connect than the
engines backend). The image comes from the facility registry with the pull-only account, sent
with the service (see pull_account). Swarm reports a task running once the image's health
check passes: a session is ready when its VNC server answers.

What Swarm (API 1.41) cannot express and the engines backend has: `no-new-privileges`,
whole GPUs by id, and a session network without inter-container traffic (a task
without networks is on its node's default bridge).
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Mapping

import docker.errors
import docker.types

from asci_core.config_base import Secret
from asci_logging.container_logging import log_config

from .directory import Directory, Researcher
from .errors import Conflict, LauncherError, NoCapacity, NodeUnavailable, StartFailed
from .inventory import (COMPONENT, SESSION_LABEL, Capacity, Reservation, reservation_from_container, scope_filter,
                        scope_labels)
from .nodes import NodeDown, NodePool
from .pull_account import authorise_service
from .session_spec import BindMount, container_name, first_password_file, identity_kwargs
from .sessions import SESSION_ID, Connection, Launcher, ReconcileReport, log, start_failure
from .vnc_endpoint import VNC_PORT
from .settings import SWARM_MANAGER, EnvironmentSettings, LauncherSettings, NodeSettings
from .store import LOST, READY, STARTING, STOPPED, STOPPING, SessionRecord, SessionStore
from .image_reference import resolve
from .vnc_password import new_password, set_password

# Task states after which the task holds nothing and will not run again.
FINISHED = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})
POLL_INTERVAL = 0.1


def service_kwargs(env: EnvironmentSettings, user: Researcher, reservation: Reservation, mounts: list[BindMount],
                   scope: Mapping[str, str], stop_timeout: int, image: str | None = None) -> dict[str, Any]:
    """Arguments of `APIClient.create_service` for one session."""
    identity = identity_kwargs(env, user)
    # A service has no stdin to hand the first password to, and a Docker secret would keep it in
    # the managers' Raft store on disk: the desktop image makes up a first password nobody knows,
    # and the first connect sets one with the image's password command (see the module's notes).
    identity["environment"].pop("ASCI_VNC_PASSWORD_FILE", None)
    name = container_name(reservation.session)
    logging = log_config(COMPONENT, name, user=user.name, environment=env.name)
    labels = {**scope_labels(scope), **reservation.labels(), **logging.labels}
    nano_cpus = int(round(reservation.cpus * 1e9))
    resources = docker.types.Resources(cpu_limit=nano_cpus, mem_limit=reservation.memory,
                                       cpu_reservation=nano_cpus, mem_reservation=reservation.memory)
    resources["Limits"]["Pids"] = env.pids_limit  # API 1.41; the SDK has no argument for it yet
    spec = docker.types.ContainerSpec(
        image=image or env.image, args=list(env.command) or None, hostname=f"asci-{reservation.session[:12]}",
        env={**env.env, **identity["environment"], "USER": user.name, "LOGNAME": user.name,
             "ASCI_SESSION": reservation.session},
        user=identity["user"], groups=identity.get("group_add"), labels=labels, init=identity["init"],
        cap_drop=["ALL"], cap_add=identity["cap_add"],
        stop_grace_period=int(stop_timeout * 1e9),
        mounts=[*(docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in mounts),
                docker.types.Mount("/dev/shm", None, type="tmpfs", tmpfs_size=env.shm_bytes)])
    template = docker.types.TaskTemplate(
        spec, resources=resources, restart_policy=docker.types.RestartPolicy(condition="none"),
        placement=docker.types.Placement(
            constraints=[f"node.labels.{k}=={v}" for k, v in sorted(env.node_labels.items())] or None),
        log_driver=docker.types.DriverConfig(logging.log_config["Type"], logging.log_config["Config"]))
    return dict(task_template=template, name=name, labels=labels,
                mode=docker.types.ServiceMode("replicated", replicas=1))


def list_session_services(client: Any, scope: Mapping[str, str]) -> list[dict[str, Any]]:
    return client.api.services(filters={"label": scope_filter(scope)})


def latest_tasks(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest task of each service."""
    newest: dict[str, dict[str, Any]] = {}
    for task in tasks:
        current = newest.get(task["ServiceID"])
        if current is None or task.get("CreatedAt", "") > current.get("CreatedAt", ""):
            newest[task["ServiceID"]] = task
    return newest


def task_state(task: Mapping[str, Any] | None) -> tuple[str, str]:
    """(state, Swarm's error) of TASK; ("", "") when there is none yet. Swarm sets the error when
    something went wrong ("no suitable node ..."); its message only narrates ("pending task scheduling")."""
    if task is None:
        return "", ""
    status = task.get("Status") or {}
    return status.get("State", ""), status.get("Err") or ""


class SwarmLauncher(Launcher):
    def __init__(self, settings: LauncherSettings, store: SessionStore, directory: Directory,
                 scope: Mapping[str, str] | None = None, registry: Any | None = None):
        if settings.swarm is None:
            raise ValueError("backend swarm needs launcher.swarm")
        manager = NodeSettings(name=SWARM_MANAGER, url=settings.swarm.manager, tls=settings.swarm.tls,
                               timeout=settings.swarm.timeout)
        super().__init__(settings, store, directory, NodePool([manager, *settings.nodes], settings.engine_timeout),
                         scope, registry=registry)
        self.swarm = settings.swarm
        self._configured = {n.name: n for n in settings.nodes}

    # --- what the cluster looks like --------------------------------------

    def _survey(self, client: Any) -> tuple[list[dict], list[dict], dict[str, dict]]:
        nodes = client.api.nodes()
        services = list_session_services(client, self.scope)
        ids = [s["ID"] for s in services]
        tasks = latest_tasks(client.api.tasks(filters={"service": ids})) if ids else {}
        return nodes, services, tasks

    def _inventory(self) -> tuple[dict[str, Capacity], dict[str, Reservation], dict[str, str]]:
        try:
            nodes, services, tasks = self.pool.call(SWARM_MANAGER, self._survey)
        except NodeDown as exc:
            return {}, {}, {SWARM_MANAGER: exc.reason}
        except docker.errors.APIError as exc:
            return {}, {}, {SWARM_MANAGER: f"engine error: {exc.explanation or exc}"}
        capacities: dict[str, Capacity] = {}
        down: dict[str, str] = {}
        hostnames: dict[str, str] = {}
        for node in nodes:
            name = node["Description"]["Hostname"]
            hostnames[node["ID"]] = name
            state = node.get("Status", {}).get("State", "unknown")
            availability = node.get("Spec", {}).get("Availability", "active")
            if state != "ready":
                down[name] = f"Swarm reports it {state}"
                continue
            if availability != "active":
                down[name] = f"Swarm availability {availability}"
                continue
            capacities[name] = self._capacity(name, node)
        reservations: dict[str, Reservation] = {}
        for service in services:
            found = _reservation(service, tasks.get(service["ID"]), hostnames)
            # One not placed yet is counted by its record, on the node admission chose for it.
            if found is not None and found.node:
                reservations[found.session] = found
        return capacities, reservations, down

    def _capacity(self, name: str, node: Mapping[str, Any]) -> Capacity:
        configured = self._configured.get(name)
        reported = node["Description"].get("Resources") or {}
        labels = {**(configured.labels if configured else {}), **(node.get("Spec", {}).get("Labels") or {})}
        cpus = configured.cpus if configured and configured.cpus is not None else reported.get("NanoCPUs", 0) / 1e9
        memory = (configured.memory_bytes if configured and configured.memory is not None
                  else int(reported.get("MemoryBytes", 0)))
        gpus = configured.gpus if configured and configured.gpus is not None else 0
        return Capacity(cpus=cpus, memory=memory, gpus=gpus, labels=labels)

    # --- start and stop ----------------------------------------------------

    def _start(self, record: SessionRecord, env: EnvironmentSettings, who: Researcher, mounts: list) -> SessionRecord:
        if env.gpus:
            self.store.update(record.id, state=STOPPED, reason="GPUs need the engines backend")
            raise StartFailed(f"environment {env.name!r} needs GPUs, which the Swarm backend does not assign; "
                              f"use launcher.backend: engines")
        reservation = Reservation(record.id, "", who.name, env.name, record.cpus, record.memory)
        try:
            image = resolve(env.image, self.registry, self.settings.engine_timeout)
        except StartFailed as exc:
            self.store.update(record.id, state=STOPPED, reason=str(exc))
            raise
        kwargs = service_kwargs(env, who, reservation, mounts, self.scope, self.settings.stop_timeout, image)

        def create(client: Any) -> str:
            authorise_service(client, image, self.registry)
            return client.api.create_service(**kwargs)["ID"]

        try:
            service_id = self.pool.call(SWARM_MANAGER, create)
            node, container = self._wait_running(service_id)
        except (NodeDown, docker.errors.APIError, LauncherError) as exc:
            reason = start_failure(exc, "Swarm manager")
            self.store.update(record.id, state=STOPPED, reason=reason)
            self._remove_quietly(record)
            log.warning("session failed to start", session=record.id, user=who.name, environment=env.name,
                        reason=reason)
            if isinstance(exc, LauncherError):
                raise
            raise (NodeUnavailable if isinstance(exc, NodeDown) else StartFailed)(
                f"session for {env.name!r} could not start: {reason}") from None
        log.info("session started", session=record.id, user=who.name, environment=env.name, node=node,
                 service=service_id[:12], container=container[:12])
        return self.store.update(record.id, state=READY, node=node, container_id=service_id)

    def _wait_running(self, service_id: str) -> tuple[str, str]:
        """(node hostname, container id) once the service's task runs; Swarm's reason when it cannot."""
        deadline = time.monotonic() + self.swarm.start_timeout
        state, why = "", ""
        while time.monotonic() < deadline:
            tasks = self.pool.call(SWARM_MANAGER, lambda c: c.api.tasks(filters={"service": service_id}))
            task = latest_tasks(tasks).get(service_id)
            state, why = task_state(task)
            if state == "running":
                container = task["Status"].get("ContainerStatus", {}).get("ContainerID", "")
                node = self.pool.call(SWARM_MANAGER, lambda c: c.api.inspect_node(task["NodeID"]))
                return node["Description"]["Hostname"], container
            if state == "pending" and why:
                # The scheduler looked at every node and none fits: it says why.
                raise NoCapacity(f"Swarm cannot place the session: {why}")
            if state in FINISHED:
                raise StartFailed(f"Swarm's task ended {state}: {why or 'no reason given'}")
            time.sleep(POLL_INTERVAL)
        raise StartFailed(f"not running after {self.swarm.start_timeout:g} s "
                          f"(Swarm: {state or 'no task yet'}{': ' + why if why else ''})")

    def _engine_of(self, record: SessionRecord) -> str:
        return SWARM_MANAGER

    def _remove(self, client: Any, record: SessionRecord) -> None:
        try:
            client.api.remove_service(container_name(record.id))
        except docker.errors.NotFound:
            pass

    # --- connect -------------------------------------------------------------

    def connect(self, session_id: str, as_user: str | None = None) -> Connection:
        record = self._owned(session_id, as_user)
        if record.state != READY:
            raise Conflict(f"session {record.id} is {record.state}, not ready")
        try:
            task = latest_tasks(self.pool.call(SWARM_MANAGER, lambda c: c.api.tasks(
                filters={"service": record.container_id, "desired-state": "running"}))).get(record.container_id)
        except NodeDown as exc:
            raise NodeUnavailable(str(exc)) from None
        if task_state(task)[0] != "running":
            raise StartFailed(f"session {record.id} has no running task")
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        if record.node not in self._configured:
            raise StartFailed(f"session {record.id} runs on {record.node}, whose engine is not in launcher.nodes: "
                              f"the password cannot be set")
        password = new_password()
        env = self.settings.environment(record.environment)
        who = self._user(record.user) if env is not None and env.account == "image" else None

        def run(client: Any) -> str:
            timeout = self.pool.timeout_for(record.node)
            if who is None:
                set_password(client, container, password, timeout)
            else:
                set_password(client, container, password, timeout, user=f"{who.uid}:{who.gid}",
                             after=first_password_file(who))
            networks = client.api.inspect_container(container)["NetworkSettings"]["Networks"] or {}
            return next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")

        try:
            address = self.pool.call(record.node, run)
        except NodeDown as exc:
            raise NodeUnavailable(str(exc)) from None
        except docker.errors.APIError as exc:
            raise StartFailed(f"session {record.id} cannot be reached: {exc.explanation or exc}") from None
        if not address:
            raise StartFailed(f"session {record.id} has no address on {record.node}")
        self.store.update(record.id, last_activity=time.time())
        log.info("session connect", session=record.id, user=record.user, node=record.node)
        return Connection(record.id, record.node, address, VNC_PORT, Secret(password, f"session {record.id}"))

    # --- reconcile -------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """The engines backend's rule, with services for containers: a service without a record is
        adopted when its task runs and its labels, user and environment are known, else removed; a
        service whose record is stopped, or whose task ended, is removed and the record closed; a
        record without a service is closed. When the manager does not answer, or Swarm reports the
        task's node down, the session is lost, and ready again when it answers."""
        report = ReconcileReport()
        try:
            nodes, services, tasks = self.pool.call(SWARM_MANAGER, self._survey)
        except NodeDown as exc:
            for record in self.store.list(states=(STARTING, READY, STOPPING), limit=1_000_000):
                if record.id not in self._inflight:
                    self._lose(record, f"the Swarm manager is not answering: {exc.reason}", report)
            return report
        node_state = {n["ID"]: (n["Description"]["Hostname"], n.get("Status", {}).get("State", "unknown"))
                      for n in nodes}
        seen: set[str] = set()
        for service in services:
            labels = (service.get("Spec") or {}).get("Labels") or {}
            session_id = labels.get(SESSION_LABEL, "")
            record = self.store.get(session_id) if SESSION_ID.fullmatch(session_id) else None
            task = tasks.get(service["ID"])
            state, why = task_state(task)
            hostname, node_is = node_state.get((task or {}).get("NodeID", ""), ("", ""))
            if record is not None:
                seen.add(record.id)
            if record is None:
                found = _reservation(service, task, {k: v[0] for k, v in node_state.items()})
                if found is not None and state == "running" and self._adoptable(found):
                    now = time.time()
                    created = _timestamp(service.get("CreatedAt")) or now
                    self.store.insert(SessionRecord(found.session, found.user, found.environment, hostname,
                                                    service["ID"], READY, found.cpus, found.memory, 0, (),
                                                    created, now, now, "adopted at start"))
                    seen.add(found.session)
                    report.adopted.append(found.session)
                    log.info("session adopted", session=found.session, user=found.user, node=hostname)
                    continue
                self._remove_service(service, report, "no record of it")
                continue
            if record.id in self._inflight:
                continue
            if record.state in (STOPPED, STOPPING) or state in FINISHED:
                self._remove_service(service, report, f"record {record.state}, task {state or 'none'}")
                if record.state != STOPPED:
                    reason = record.reason if record.state == STOPPING else f"task {state}: {why}".rstrip(": ")
                    self.store.update(record.id, state=STOPPED, reason=reason)
                    report.closed.append(record.id)
                continue
            if state == "running" and node_is != "ready":
                if record.state != LOST:
                    self._lose(record, f"Swarm reports node {hostname} {node_is}", report)
                continue
            if record.state in (STARTING, LOST) and state == "running":
                self.store.update(record.id, state=READY, node=hostname, reason="")
                report.recovered.append(record.id)
        for record in self.store.active():
            if record.id not in seen and record.id not in self._inflight:
                self.store.update(record.id, state=STOPPED, reason="service vanished")
                report.closed.append(record.id)
                log.warning("session closed", session=record.id, user=record.user, reason="service vanished")
        return report

    def _lose(self, record: SessionRecord, reason: str, report: ReconcileReport) -> None:
        self.store.update(record.id, state=LOST, reason=reason)
        report.lost.append(record.id)
        log.warning("session lost", session=record.id, user=record.user, node=record.node, reason=reason)

    def _remove_service(self, service: Mapping[str, Any], report: ReconcileReport, why: str) -> None:
        try:
            self.pool.call(SWARM_MANAGER, lambda c: c.api.remove_service(service["ID"]))
        except docker.errors.NotFound:
            pass
        except (NodeDown, docker.errors.APIError) as exc:
            log.warning("session service not removed", service=service["ID"][:12], reason=str(exc))
            return
        report.removed.append(service["ID"])
        log.info("session service removed", service=service["ID"][:12], reason=why)


def _reservation(service: Mapping[str, Any], task: Mapping[str, Any] | None,
                 hostnames: Mapping[str, str]) -> Reservation | None:
    """A session service's reservation, on the node its task runs on ("" while unplaced); None when its
    labels are not ASCI's or its task has ended."""
    state, _ = task_state(task)
    if state in FINISHED:
        return None
    labels = (service.get("Spec") or {}).get("Labels") or {}
    summary = {"Labels": labels, "Id": service.get("ID", ""), "State": "running"}
    return reservation_from_container(hostnames.get((task or {}).get("NodeID", ""), ""), summary)


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return None
