"""Deploy, roll forward, roll back: the running containers of each service made to match its config.

A service with published ports has a *front* (front.py, on by default): a long-lived container that
owns the host ports and forwards to the serving version, which runs on the service network. A roll:
  `start-first`: the new version starts beside the serving one and must pass its health check; the
     front then sends new connections to it, the old version finishes its open ones (bounded by
     `front.drain`) and stops. No connection is refused, and a failing tag never interrupts anything.
  `stop-first` (services that cannot run twice): the front holds new connections (up to `front.hold`
     seconds each), the old version drains and stops, the new one starts and must pass its health
     check, then the front switches to it. On failure the old version starts again and gets them.
Without a front (`front.enabled: false`, or no published ports) start-first trials the new version
as a *candidate* that publishes nothing, then stops the old one and starts the new one on the ports
(a gap of one container start; none without ports, where both simply run at once).
Any failure keeps or restores the old version and marks the tag bad.

Every roll is written as `running` before anything changes; at start (`reconcile`) a roll found
`running` was cut short by a restart and is undone: the recorded version is the one left running
(and the one the front forwards to).
"""
from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import docker.errors

from asci_core.errors import AsciError, UsageError
from asci_core.jsonlog import get_logger
from asci_core.launcher.nodes import NodePool, default_nodes

from . import containers as ctr
from . import front as fr
from .notify import post_failed_roll
from .policy import allowed, first_allowed, first_tag, next_tag
from .self_container import own_container_id
from .settings import ServiceSettings
from .store import FAILED, INTERRUPTED, ROLLED_BACK, SUCCEEDED, Roll, ServiceStore

log = get_logger("services")


# Rolls nobody watches: their failures go to Slack.
AUTOMATIC = ("autobuild", "registry")


class RollFailed(AsciError):
    pass


class WouldReplaceItself(AsciError):
    """The command runs inside a version of the service it would replace: stopping it would end the roll
    half-done (README, Services: updating `serve`)."""


@dataclass(frozen=True)
class Status:
    service: str
    node: str
    image: str
    tag: str | None
    digest: str | None
    health: str
    since: float | None
    front: fr.FrontState | None = None  # services with published ports behind a front
    problem: str | None = None  # what `deploy` would repair: a missing version, a front down or misdirected


def workdir_of(config: Any) -> Path:
    return config.services.workdir or config.stack.state_dir / "services"


class Services:
    def __init__(self, config: Any, notify: Callable[..., None] = post_failed_roll):
        from registry.service import registry_access

        self.config = config
        self.settings = config.services
        self.workdir = workdir_of(config)
        nodes = default_nodes(config.launcher.nodes, str(config.stack.docker.socket))
        unknown = [f"{s.name} ({s.node})" for s in self.settings.definitions if s.node not in {n.name for n in nodes}]
        if unknown:
            raise UsageError(f"services on nodes not in launcher.nodes: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(n.name for n in nodes))})")
        # This host's engines: a container's bridge address is reachable and a local secrets file mountable.
        self._here = {n.name for n in nodes if n.url.startswith("unix://")}
        unchecked = [f"{s.name} ({s.node})" for s in self.settings.definitions
                     if s.health.http_path is not None and s.node not in self._here and not fr.fronted(s)]
        if unchecked:
            raise UsageError(f"an HTTP health check on another node is made through the service's front, which "
                             f"needs published ports (and front.enabled): {', '.join(unchecked)}; "
                             f"or use health.command")
        self.pool = NodePool(nodes, timeout=config.launcher.engine_timeout)
        self.store = ServiceStore(self.workdir / "services.db")
        self.access = registry_access(config)
        self._notify = notify
        self._locks: dict[str, threading.Lock] = {s.name: threading.Lock() for s in self.settings.definitions}

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """One roll of a service at a time: across threads, and across `asci serve` and `asci services`."""
        path = self.workdir / f"{name}.lock"
        with self._locks[name], open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self.pool.close()
        self.store.close()

    # --- lookups ------------------------------------------------------------------

    def service(self, name: str) -> ServiceSettings:
        svc = self.settings.get(name)
        if svc is None:
            raise UsageError(f"no service named {name!r} in services.definitions")
        return svc

    def image(self, svc: ServiceSettings, tag: str) -> str:
        return f"{self.access.address}/{svc.repository}:{tag}"

    def _engine(self, svc: ServiceSettings, fn: Callable[[Any], Any]) -> Any:
        return self.pool.call(svc.node, fn)

    def _containers(self, client: Any, svc: ServiceSettings) -> list[Any]:
        return client.containers.list(all=True, filters={"label": f"{ctr.SERVICE_LABEL}={svc.name}"})

    # --- reconcile ----------------------------------------------------------------

    def deploy(self, name: str | None = None, trigger: str = "deploy",
               report: Callable[[str], None] | None = None) -> list[str]:
        """Make each service (or NAME) run its recorded version with its current config; one line per service,
        also given to REPORT as it comes. The service whose container runs this is refused after the others."""
        names = [name] if name else [s.name for s in self.settings.definitions]
        lines, refused = [], None
        for n in names:
            try:
                lines.append(self.reconcile(self.service(n), trigger))
            except WouldReplaceItself as exc:
                refused = exc
                continue
            if report is not None:
                report(lines[-1])
        if refused is not None:
            raise refused
        return lines

    def reconcile(self, svc: ServiceSettings, trigger: str = "deploy") -> str:
        with self._lock(svc.name):
            interrupted = self.store.running_rolls(svc.name)
            current = self.store.current(svc.name)
            want = svc.tag if svc.follow == "pinned" or current is None else current.tag
            exact = ctr.container_name(svc, want)

            def tidy(client: Any) -> bool:
                """Leave one container of the recorded version (the exact one wanted, if it exists), running."""
                found = self._containers(client, svc)
                serving = [c for c in found if c.labels.get(ctr.ROLE_LABEL) == "serving"
                           and current is not None and c.labels.get(ctr.TAG_LABEL) == current.tag]
                keep = next((c for c in serving if c.name == exact), serving[0] if serving else None)
                if keep is not None and keep.status == "running":
                    # Before the others go: a roll may have switched it. Undoing a roll is no repair to report.
                    misdirected = self._front_back_to(client, svc, keep)
                    if not interrupted:
                        repaired.append(misdirected)
                for c in found:  # first remove, then start: a half-finished roll may hold the host ports
                    if c is not keep:
                        c.remove(force=True)
                if keep is not None and keep.status != "running":
                    keep.start()
                    problem = ctr.wait_healthy(keep, svc, self._checked_from(svc, self._front_of(client, svc)))
                    if problem:
                        log.error("the recorded version is not healthy after its restart", service=svc.name,
                                  tag=keep.labels.get(ctr.TAG_LABEL), problem=problem)
                if keep is not None and keep.name == exact and fr.fronted(svc):
                    repaired.append(self._front_to(client, svc, keep))
                return keep is not None and keep.name == exact

            repaired: list[str | None] = []
            self._refuse_own_container(svc, unless=exact if current is not None and current.tag == want
                                       and not interrupted else None)
            kept_exact = self._engine(svc, tidy)
            for roll in interrupted:
                # Undone above; a following service takes the tag again at its next check.
                self.store.end_roll(roll.id, INTERRUPTED, reason="asci serve stopped during the roll; undone")
                log.warning("undid a roll interrupted by a restart", service=svc.name, to_tag=roll.to_tag)
            if kept_exact and current is not None and current.tag == want:
                if any(repaired):
                    return f"{svc.name}: {want} running (front repaired: {next(r for r in repaired if r)})"
                return f"{svc.name}: {want} running (unchanged)"
            self._roll_locked(svc, current.tag if current else None, want, trigger)
            return f"{svc.name}: {want} deployed"

    # --- rolls ----------------------------------------------------------------------

    def roll_to(self, svc: ServiceSettings, tag: str, trigger: str) -> str:
        with self._lock(svc.name):
            current = self.store.current(svc.name)
            return self._roll_locked(svc, current.tag if current else None, tag, trigger)

    def _refuse_own_container(self, svc: ServiceSettings, unless: str | None = None) -> None:
        """WouldReplaceItself when this process runs in one of SVC's containers (but UNLESS, the one kept)."""
        own = own_container_id()
        if own is None:
            return
        mine = [c for c in self._engine(svc, lambda client: self._containers(client, svc)) if c.id == own]
        if mine and mine[0].name != unless:
            raise WouldReplaceItself(
                f"refusing to replace {svc.name} from inside its own container {mine[0].name}: the roll would stop "
                f"this command half-way; run `asci services deploy {svc.name}` on the host or in a one-shot "
                f"container of the new image (README, Services: updating serve)")

    def _roll_locked(self, svc: ServiceSettings, from_tag: str | None, to_tag: str, trigger: str) -> str:
        self._refuse_own_container(svc)
        roll_id = self.store.begin_roll(svc.name, from_tag, to_tag, trigger)
        started = time.monotonic()
        log.info("roll started", service=svc.name, from_tag=from_tag, to_tag=to_tag, trigger=trigger)
        try:
            digest = self._engine(svc, lambda client: self._replace(client, svc, from_tag, to_tag))
        except RollFailed as exc:
            self.store.end_roll(roll_id, FAILED, reason=str(exc))
            if trigger != "deploy" or from_tag is not None:
                self.store.mark_bad(svc.name, to_tag, str(exc))
            log.error("roll failed", service=svc.name, to_tag=to_tag, reason=str(exc))
            if trigger in AUTOMATIC:  # by hand, the person at the terminal sees the one-line error
                self._notify(self.config.slack.webhook_url, svc.name, from_tag, to_tag, str(exc))
            raise
        except BaseException as exc:
            self.store.end_roll(roll_id, FAILED, reason=f"{type(exc).__name__}: {exc}"[:300])
            raise
        self.store.set_current(svc.name, to_tag, digest)
        self.store.end_roll(roll_id, SUCCEEDED, digest=digest)
        log.info("roll finished", service=svc.name, to_tag=to_tag, digest=digest,
                 duration_s=round(time.monotonic() - started, 3))
        return digest

    def _pull(self, client: Any, svc: ServiceSettings, tag: str) -> str:
        ref = self.image(svc, tag)
        try:
            image = client.images.pull(ref, auth_config=self.access.auth_config())
        except docker.errors.APIError as exc:
            raise RollFailed(f"cannot pull {ref}: {exc.explanation or exc}"[:300]) from None
        digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests", []) if "@" in d]
        return digests[0] if digests else image.id

    def _replace(self, client: Any, svc: ServiceSettings, from_tag: str | None, to_tag: str) -> str:
        digest = self._pull(client, svc, to_tag)
        image = self.image(svc, to_tag)
        if fr.fronted(svc):
            self._replace_behind_front(client, svc, image, to_tag, digest)
            return digest
        old = [c for c in self._containers(client, svc)
               if c.labels.get(ctr.ROLE_LABEL) == "serving" and c.name != ctr.container_name(svc, to_tag)]
        if svc.replace == "start-first":
            self._trial(client, svc, image, to_tag, digest)
            if not svc.ports:  # no host port to share: both run at once, the gap is zero
                self._start(client, svc, image, to_tag, digest)
                for c in old:
                    c.remove(force=True)
                return digest
        # Created before the old one stops (creating binds no port): the gap is only stop + start.
        new = ctr.create(client, svc, image, to_tag, digest, self.workdir, candidate=False,
                         copy_secrets=self._copy_secrets(svc))
        for c in old:
            c.stop(timeout=self.settings.stop_timeout)
        try:
            self._run_checked(new, svc)
        except RollFailed:
            for c in old:
                c.start()
            raise
        for c in old:
            c.remove(force=True)
        return digest

    # --- behind a front -------------------------------------------------------------------

    @property
    def _base_image(self) -> str:
        return self.config.stack.base_image.name

    def _replace_behind_front(self, client: Any, svc: ServiceSettings, image: str, tag: str, digest: str) -> None:
        fr.ensure_image(client, self._base_image)  # built before anything stops: a first build takes ~30 s
        fr.ensure_network(client, svc)
        new = ctr.create(client, svc, image, tag, digest, self.workdir, candidate=False,
                         network=fr.network_name(svc), copy_secrets=self._copy_secrets(svc))
        old = [c for c in self._containers(client, svc) if c.name != new.name]
        network = fr.network_name(svc)
        # Versions from before the front publish the ports themselves: they stop for the front to bind them.
        publishers = [c for c in old if network not in (c.attrs["NetworkSettings"].get("Networks") or {})]
        front = fr.find(client, svc, self._base_image)
        created: list[Any] = []
        paused: list[str | None] = []  # the backend before a stop-first pause, to switch back to on failure

        def undo() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                new.remove(force=True)
            if created and publishers:
                created[0].remove(force=True)  # gives the ports back to the versions from before the front
            for c in old:
                c.start()
            if paused and not (created and publishers):
                fr.switch(front, paused[0])

        try:
            if front is None:  # the front first: on another node the health check is made from it
                serving = [c.name for c in old if c not in publishers and c.status == "running"]
                for c in publishers:
                    c.stop(timeout=self.settings.stop_timeout)  # meanwhile the new front holds connections
                front = fr.create(client, svc, self._base_image, serving[0] if serving else None)
                created.append(front)
            if svc.replace == "stop-first":
                paused.append(fr.switch(front, None))  # new connections wait in the front ...
                self._drain(front, old, svc)  # ... while the old version finishes its open ones
                for c in old:
                    c.stop(timeout=self.settings.stop_timeout)
            self._run_checked(new, svc, self._checked_from(svc, front))
            fr.switch(front, new.name)
        except (RollFailed, fr.FrontError, docker.errors.APIError):
            undo()
            raise
        if svc.replace == "start-first":
            self._drain(front, old, svc)
        for c in old:
            c.stop(timeout=self.settings.stop_timeout)
            c.remove(force=True)

    def _drain(self, front: Any, old: list[Any], svc: ServiceSettings) -> None:
        """Each old version finishes the connections the front opened to it (bounded by front.drain)."""
        for c in old:
            try:
                left = fr.drain(front, c.name, svc.front.drain)
            except fr.FrontError as exc:
                log.warning("could not drain the retired version", service=svc.name, error=exc.one_line())
                continue
            if left:
                log.warning("retired version still had open connections", service=svc.name,
                            container=c.name, open=left, drain_s=svc.front.drain)

    def _copy_secrets(self, svc: ServiceSettings) -> bool:
        return svc.node not in self._here

    def _front_of(self, client: Any, svc: ServiceSettings) -> Any | None:
        return fr.running(client, svc) if fr.fronted(svc) else None

    def _checked_from(self, svc: ServiceSettings, front: Any | None) -> Any | None:
        """Where the HTTP health check is made from: this host reaches its own engine's containers directly
        (a request, not an exec per check); on another node only the front, inside the service network, can."""
        return None if svc.node in self._here else front

    def _front_back_to(self, client: Any, svc: ServiceSettings, keep: Any) -> str | None:
        """The running front forwards to KEEP again, if a roll cut short (or a hand) had switched it away;
        what it forwarded to instead. A front that is not running is left to _front_to."""
        front = fr.running(client, svc) if fr.fronted(svc) else None
        if front is None:
            return None
        backend = fr.current(front)
        if backend == keep.name:
            return None
        fr.switch(front, keep.name)
        log.warning("front switched back to the recorded version", service=svc.name, backend=keep.name,
                    was=backend)
        return f"the front forwarded to {backend or 'nothing (holding)'}"

    def _front_to(self, client: Any, svc: ServiceSettings, keep: Any) -> str | None:
        """The front exists, runs, and forwards to KEEP (a running version on the service network).
        What was repaired, if anything."""
        before = fr.describe(client, svc, keep.name)
        front = fr.find(client, svc, self._base_image)
        if front is None:
            fr.create(client, svc, self._base_image, keep.name)
        elif fr.current(front) != keep.name:
            fr.switch(front, keep.name)
        if before.problem:
            log.warning("front repaired", service=svc.name, was=before.problem, backend=keep.name)
        return before.problem

    # --- without a front --------------------------------------------------------------

    def _trial(self, client: Any, svc: ServiceSettings, image: str, tag: str, digest: str) -> None:
        """The new version proves healthy beside the serving one, publishing nothing."""
        candidate = ctr.create(client, svc, image, tag, digest, self.workdir, candidate=True,
                               copy_secrets=self._copy_secrets(svc))
        try:
            candidate.start()
            problem = ctr.wait_healthy(candidate, svc)
        finally:
            candidate.remove(force=True)
        if problem:
            raise RollFailed(problem)

    def _start(self, client: Any, svc: ServiceSettings, image: str, tag: str, digest: str) -> Any:
        new = ctr.create(client, svc, image, tag, digest, self.workdir, candidate=False,
                         copy_secrets=self._copy_secrets(svc))
        return self._run_checked(new, svc)

    def _run_checked(self, new: Any, svc: ServiceSettings, front: Any | None = None) -> Any:
        try:
            new.start()
            problem = ctr.wait_healthy(new, svc, front)
        except docker.errors.APIError as exc:
            problem = f"cannot start: {exc.explanation or exc}"[:300]
        if problem:
            new.remove(force=True)
            raise RollFailed(problem)
        return new

    # --- rolling forward ---------------------------------------------------------------

    def offer(self, svc: ServiceSettings, tag: str, trigger: str) -> str | None:
        """Roll SVC to TAG when its policy takes it: newer, in range, not marked bad. Returns the digest.
        A service never deployed takes it only with `deploy_when_built`."""
        with self._lock(svc.name):
            current = self.store.current(svc.name)
            if tag in self.store.bad_tags(svc.name):
                return None
            if current is None:
                if not (svc.deploy_when_built and first_allowed(svc.follow, svc.tag, tag)):
                    return None
            elif not allowed(svc.follow, current.tag, tag):
                return None
            try:
                return self._roll_locked(svc, current.tag if current else None, tag, trigger)
            except RollFailed:
                return None

    def built(self, image: str, tag: str) -> None:
        """Autobuild finished IMAGE:TAG (IMAGE = registry address/repository)."""
        for svc in self.settings.definitions:
            if f"{self.access.address}/{svc.repository}" == image:
                self.offer(svc, tag, trigger="autobuild")

    def check_registry(self) -> None:
        """Tags pushed by others: each following service takes the highest one its policy allows."""
        from registry.client import RegistryClient

        client = RegistryClient(self.access)
        for svc in self.settings.definitions:
            current = self.store.current(svc.name)
            if (svc.follow == "pinned" and current is not None) or (current is None and not svc.deploy_when_built):
                continue
            try:
                tags = client.tags(svc.repository)
            except AsciError as exc:
                log.warning("registry check failed", service=svc.name, error=str(exc)[:200])
                continue
            bad = self.store.bad_tags(svc.name)
            if current is None:
                tag = first_tag(svc.follow, svc.tag, tags, bad)
            else:
                tag = next_tag(svc.follow, current.tag, tags, bad)
            if tag is not None:
                self.offer(svc, tag, trigger="registry")

    # --- crashes ------------------------------------------------------------------------

    def restore(self, service: str, container: str, exit_code: int, restart_wait: float = 5.0) -> str | None:
        """The serving version CONTAINER of SERVICE exited (the engine's exit feed): it runs again, restarted
        by the engine's restart policy or, when the engine does not within RESTART_WAIT seconds (stopped by
        hand, removed), restored here; the front forwards to it. One log line. None when CONTAINER is not the
        recorded version (a retired one, a roll's own stop): nothing to do."""
        svc = self.settings.get(service)
        if svc is None:
            return None
        with self._lock(svc.name):  # after a roll in progress: its own stops are then old versions
            current = self.store.current(svc.name)
            if current is None or container != ctr.container_name(svc, current.tag):
                return None

            def bring_back(client: Any) -> tuple[str, str | None]:
                try:
                    version = client.containers.get(container)
                except docker.errors.NotFound:
                    return "missing", None
                deadline = time.monotonic() + restart_wait
                version.reload()
                while not version.attrs["State"].get("Running") and time.monotonic() < deadline:
                    time.sleep(0.1)  # bounded poll of the engine's own restart (its policy's first delay)
                    version.reload()
                by = "engine"
                if not version.attrs["State"].get("Running"):
                    version.start()
                    by = "asci"
                problem = ctr.wait_healthy(version, svc, self._checked_from(svc, self._front_of(client, svc)))
                if fr.fronted(svc) and problem is None:
                    self._front_to(client, svc, version)
                return by, problem

            by, problem = self._engine(svc, bring_back)
        if by == "missing":
            line = f"{svc.name}: serving version {container} exited with {exit_code} and is gone; deploying it again"
            log.error("serving version exited and is gone; deploying it again", service=svc.name,
                      container=container, exit_code=exit_code)
            return f"{line}: {self.reconcile(svc, 'repair')}"
        fields = {"service": svc.name, "container": container, "exit_code": exit_code, "restarted_by": by}
        if problem:
            log.error("serving version exited; restarted but not healthy", **fields, problem=problem)
        else:
            log.warning("serving version exited; restarted and healthy", **fields)
        line = f"{svc.name}: {container} exited with {exit_code}; restarted by {by}"
        return f"{line}, {problem}" if problem else line

    def repair(self) -> list[str]:
        """Reconcile the deployed services whose status shows a problem (the periodic check's safety net for
        exits the feed missed: another node, `asci serve` down at the time)."""
        return [self.reconcile(self.service(s.service), "repair") for s in self.status()
                if s.problem and s.tag is not None]

    # --- manual --------------------------------------------------------------------------

    def rollback(self, name: str) -> str:
        """Back to the version before the current one; the current tag is marked bad so it is not taken again."""
        svc = self.service(name)
        with self._lock(svc.name):
            current = self.store.current(svc.name)
            previous = next((r.from_tag for r in self.store.history(svc.name, 500)
                             if r.result == SUCCEEDED and r.to_tag == (current.tag if current else None)
                             and r.from_tag and r.from_tag != r.to_tag), None)
            if current is None or previous is None:
                raise UsageError(f"service {name} has no earlier version to roll back to")
            self._refuse_own_container(svc)  # before the tag is marked bad
            self.store.mark_bad(svc.name, current.tag, "rolled back by hand")
            digest = self._roll_locked(svc, current.tag, previous, trigger="rollback")
            last = self.store.history(svc.name, 1)[0]
            self.store.end_roll(last.id, ROLLED_BACK, digest=digest)
            return f"{name}: rolled back from {current.tag} to {previous}"

    def history(self, name: str) -> list[Roll]:
        return self.store.history(self.service(name).name)

    def status(self) -> list[Status]:
        found = []
        for svc in self.settings.definitions:
            current = self.store.current(svc.name)
            want = ctr.container_name(svc, current.tag) if current else None

            def look(client: Any) -> tuple[str, fr.FrontState | None]:
                front = fr.describe(client, svc, want) if fr.fronted(svc) else None
                for c in self._containers(client, svc):
                    if c.name == want:
                        if c.status != "running":
                            return c.status, front
                        problem = ctr.check_once(c, svc, self._checked_from(svc, self._front_of(client, svc)))
                        return ("healthy" if problem is None else "unhealthy"), front
                return "missing", front

            front = None
            try:
                health, front = self._engine(svc, look) if current else ("not deployed", None)
            except AsciError as exc:
                health = f"unknown ({exc})"
            problem = None
            if current is not None and health != "healthy":
                problem = f"the version {current.tag} is {health}"
            elif front is not None and front.problem:
                problem = front.problem
            found.append(Status(svc.name, svc.node, self.image(svc, current.tag if current else svc.tag),
                                current.tag if current else None, current.digest if current else None,
                                health, current.since if current else None, front, problem))
        return found
