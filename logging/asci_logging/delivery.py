"""Getting one batch into the engine completely, however long the engine is away.

`deliver()` returns only when every document of the batch is indexed or in the
dead-letter index; until then it retries with capped, jittered exponential
back-off. That is what lets the caller move the cursor afterwards. The one way
out without success is `Aborted`, raised when the shipper's shutdown deadline
passes: the cursor then stays where it was and the batch is read again next time.
"""
from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from asci_core.errors import AsciError
from asci_core.jsonlog import get_logger
from asci_core.stack.search_engine import Readiness
from asci_logging.bulk import BulkClient, Rejection, TooLarge, BulkTransientError, describe_error
from asci_logging.dead_letters import dead_letter, last_resort
from asci_logging.documents import Doc
from asci_logging.metrics import Metrics

log = get_logger("logging")


class Aborted(AsciError):
    """Shutdown came before the batch was accepted."""


@dataclass(frozen=True)
class Backoff:
    initial: float
    maximum: float

    def delay(self, attempt: int) -> float:
        # Full jitter keeps many shippers from hammering a recovering cluster in step.
        ceiling = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling)


class SearchState(Protocol):
    def readiness(self) -> Readiness: ...


_MISSING = re.compile(r"pipeline with id \[(.*)\] does not exist")
# One look at the cluster serves every refusal of a round: a batch can carry thousands.
_RECHECK_S = 1.0


class MissingPipelines:
    """Whether documents refused with "pipeline does not exist" wait or become dead letters.

    - The cluster state is not recovered (health red with the "state not recovered" block, 503,
      no answer): the engine is still coming back and its installed pipelines are not loaded yet.
      Wait as long as it takes, like for a 5xx; the grace does not run.
    - The cluster state is recovered (even if some index is red): the pipeline is really missing
      (or appearing: an operator running `asci logging install`). Wait `grace` seconds from the
      recovery, then the documents become dead letters. Only refusals of requests sent after
      the recovery was seen count: a busy node answers requests from before it seconds late.
    """

    def __init__(self, search: SearchState, grace: float, max_backoff: float,
                 clock: Callable[[], float] = time.monotonic):
        self._search = search
        self._grace = grace
        self._max_backoff = max_backoff
        self.clock = clock
        self._missing: dict[str, tuple[float, float]] = {}  # pipeline -> (first, last) seen missing
        self._checked: tuple[float, Readiness] | None = None
        self._recovering_since: float | None = None
        self._known_recovered: float | None = None  # since when the cluster state is known to be recovered

    def hold(self, rejection: Rejection, sent_at: float) -> bool:
        """True: send the document again. SENT_AT: when its request left, on this object's clock."""
        found = _MISSING.fullmatch(str(rejection.error.get("reason", "")))
        if found is None:
            return False
        pipeline = found.group(1) or rejection.doc.pipeline
        now = self.clock()
        ready = self._readiness(now)
        if not ready.state_recovered:
            self._known_recovered = None
            if self._recovering_since is None:
                self._recovering_since = now
                log.warning("search engine still recovering its cluster state; holding documents",
                            pipeline=pipeline, detail=ready.detail)
            # What was seen missing before the engine went down says nothing about after.
            self._missing.pop(pipeline, None)
            return True
        if self._recovering_since is not None:
            log.info("search engine recovered", after_s=round(now - self._recovering_since, 1))
            self._recovering_since = None
        if self._known_recovered is None:
            self._known_recovered = self._checked[0] if self._checked is not None else now
        if sent_at < self._known_recovered:
            # A busy, recovering node answers late: this refusal may date from before the recovery.
            return True
        first, last = self._missing.get(pipeline, (now, now))
        # Retries of one episode come at most a back-off apart; a longer silence means it ended.
        if now - last > self._grace + self._max_backoff:
            first = now
        self._missing[pipeline] = (first, now)
        waiting = now - first < self._grace
        if waiting and now == first:
            log.warning("ingest pipeline missing; holding its documents (run `asci logging install`?)",
                        pipeline=pipeline, grace_s=self._grace)
        return waiting

    def _readiness(self, now: float) -> Readiness:
        if self._checked is None or now - self._checked[0] >= _RECHECK_S:
            answer = self._search.readiness()
            # Stamped when the answer came: the health question may wait on the engine's side.
            self._checked = (self.clock(), answer)
        return self._checked[1]


class Delivery:
    def __init__(self, client: BulkClient, backoff: Backoff, metrics: Metrics,
                 dead_letter_index: Callable[[int], str], abort: threading.Event, pipelines: MissingPipelines):
        self._client = client
        self._pipelines = pipelines
        self._backoff = backoff
        self._metrics = metrics
        self._dead_letter_index = dead_letter_index
        self._abort = abort
        self.max_docs_per_request: int | None = None

    def deliver(self, docs: Sequence[Doc]) -> None:
        indexed, rejected = self._send_all(docs)
        self._metrics.add(events_sent=indexed)
        if not rejected:
            return
        letters = [dead_letter(r, self._dead_letter_index(r.doc.realtime_us)) for r in rejected]
        # One line per kind of rejection, not per document: a mapping conflict can hit thousands.
        kinds: dict[tuple[str, str], list[Rejection]] = {}
        for r in rejected:
            kinds.setdefault((r.doc.pipeline, str(r.error.get("type"))), []).append(r)
        for (pipeline, kind), group in kinds.items():
            log.warning("documents rejected; kept in the dead-letter index", pipeline=pipeline, error_type=kind,
                        documents=len(group), status=group[0].status, example=describe_error(group[0].error))
        _, refused = self._send_all(letters)
        self._metrics.add(events_failed=len(rejected) - len(refused))
        if refused:
            finals = [last_resort(r, self._dead_letter_index(r.doc.realtime_us)) for r in refused]
            _, lost = self._send_all(finals)
            self._metrics.add(events_failed=len(refused) - len(lost))
            for r in lost:
                # Nothing more the engine will take: the line goes to our own log rather than vanish.
                log.error("dead letter refused too; the line is only in this log", id=r.doc.id,
                          error=describe_error(r.error), line=r.doc.source.decode("utf-8", "replace"))
            self._metrics.add(events_lost=len(lost))

    def _send_all(self, docs: Sequence[Doc]) -> tuple[int, list[Rejection]]:
        """Send until nothing is left to retry; returns how many were indexed, and the rejected ones."""
        indexed = 0
        rejected: list[Rejection] = []
        pending = list(docs)
        attempt = 0
        while pending:
            chunk = pending if self.max_docs_per_request is None else pending[:self.max_docs_per_request]
            try:
                self._metrics.add(bulk_requests=1)
                sent_at = self._pipelines.clock()
                outcome = self._client.send(chunk)
            except TooLarge:
                # Halve what one request carries until the engine takes it.
                self.max_docs_per_request = max(1, len(chunk) // 2)
                log.warning("bulk request too large; sending smaller ones", documents=self.max_docs_per_request)
                if len(chunk) == 1:
                    raise Aborted("a single document exceeds the engine's request size limit") from None
                continue
            except BulkTransientError as exc:
                self._metrics.add(bulk_failures=1, events_retried=len(chunk))
                self._metrics.set(state="retrying", last_error=str(exc))
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("bulk request failed; retrying", error=str(exc), attempt=attempt,
                            retry_in_s=round(delay, 2), documents=len(chunk))
                self._sleep(delay)
                continue
            indexed += outcome.indexed
            for r in outcome.rejected:
                if self._wait_for_pipeline(r, sent_at):
                    outcome.retry.append(r.doc)
                else:
                    rejected.append(r)
            rest = pending[len(chunk):]
            pending = outcome.retry + rest
            if outcome.retry:
                self._metrics.add(events_retried=len(outcome.retry))
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("engine pushed back on some documents; retrying them", documents=len(outcome.retry),
                            retry_in_s=round(delay, 2))
                self._sleep(delay)
            else:
                attempt = 0
                self._metrics.set(state="running")
        return indexed, rejected

    def _wait_for_pipeline(self, rejection: Rejection, sent_at: float) -> bool:
        """Whether a document refused for a missing pipeline is sent again (True) or dead-lettered."""
        return self._pipelines.hold(rejection, sent_at)

    def _sleep(self, seconds: float) -> None:
        if self._abort.wait(seconds):
            raise Aborted("shutdown before the batch was accepted")
