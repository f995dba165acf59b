"""The shipper: journal → documents → `_bulk`, with the cursor saved only behind acknowledged batches.

The reading thread turns journal entries into encoded documents and hands full
batches to a bounded queue; `senders` sending threads each deliver a batch
completely (retrying as long as it takes). A batch's cursor is saved once it and
every batch before it are accepted, so the cursor never passes an unsent line.
When the engine is away the queue fills and reading stops: memory stays bounded
by (batches_in_flight + senders + 1) × batch_size documents. Reading overlaps
sending, and two requests in flight let the engine use two cores (it runs one
request's ingest pipelines on one thread).

Exactly once in effect: ids come from the journal entries, so whatever is sent
again after a crash (everything after the saved cursor) overwrites itself.
"""
from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from asci_core.config import Config
from asci_core.jsonlog import get_logger
from asci_logging.bulk import BulkClient
from asci_logging.cursor_store import CursorStore
from asci_logging.delivery import Aborted, Backoff, Delivery, MissingPipelines
from asci_logging.documents import Doc, DocumentBuilder
from asci_logging.journal_source import JournalSource
from asci_logging.metrics import Backlog, Metrics, lag_seconds
from asci_logging.partials import PartialJoiner
from asci_logging.routing import Router
from asci_logging.search_client import SearchAccess, SearchClient
from asci_logging.settings import ShipperSettings

log = get_logger("logging")
_STOP = object()


@dataclass
class Batch:
    docs: list[Doc] = field(default_factory=list)
    seq: int = 0  # hand-off order: cursors are saved in this order
    size: int = 0
    started: float = 0.0
    cursor: str | None = None  # where a restart may begin once this batch is accepted
    first_realtime_us: int | None = None  # of its first journal entry: the lag's reference until accepted
    last_realtime_us: int | None = None
    entries: int = 0


def state_paths(config: Config) -> tuple[Path, Path]:
    s = config.logging.shipper
    base = config.stack.state_dir / "logging"
    return (s.cursor_file or base / "shipper.cursor", s.metrics_file or base / "shipper-metrics.json")


class Shipper:
    def __init__(self, settings: ShipperSettings, prefix: str, search: SearchAccess,
                 cursor_file: Path, metrics_file: Path | None, until_idle: float | None = None):
        self.settings = settings
        self.router = Router(prefix, settings.routes, settings.default_pipeline)
        self.builder = DocumentBuilder(prefix, self.router, settings.max_message_bytes)
        self.source = JournalSource(settings.select, settings.journal_directory)
        self.joiner = PartialJoiner(settings.max_message_bytes, settings.partial_timeout)
        self.cursors = CursorStore(cursor_file)
        self.metrics = Metrics(metrics_file)
        self.until_idle = until_idle
        self.search = search
        self.backlog = Backlog()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=settings.batches_in_flight)
        self._next_blocked_report = 0.0
        self._at_end = False
        self._sender_error: BaseException | None = None
        self._handed_off = 0
        self._commit_lock = threading.Lock()
        self._next_commit = 0
        self._done: dict[int, Batch] = {}
        # One client (and keep-alive connection) per sending thread: requests.Session is not thread-safe.
        self.deliveries = [Delivery(
            BulkClient(search.url, search.session(), settings.request_timeout, settings.compress),
            Backoff(settings.retry_initial, settings.retry_max), self.metrics,
            lambda us: self.builder.index_for("deadletter", us), self._abort,
            MissingPipelines(SearchClient(search.url, search.session()), settings.missing_pipeline_grace,
                             settings.retry_max))
            for _ in range(settings.senders)]

    @classmethod
    def from_config(cls, config: Config, until_idle: float | None = None) -> "Shipper":
        cursor_file, metrics_file = state_paths(config)
        return cls(config.logging.shipper, config.logging.prefix, SearchAccess.from_config(config),
                   cursor_file, metrics_file, until_idle)

    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping on signal", signal=signal.Signals(signum).name)
            self._stop.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # --- the reading thread (the caller's) ------------------------------------------------

    def run(self) -> int:
        saved = self.cursors.load()
        how = self.source.resume(saved, self.settings.start_at)
        self.metrics.set(cursor=saved, state="running")
        senders = [threading.Thread(target=self._send_loop, args=(d,), name=f"asci-shipper-sender-{i}", daemon=True)
                   for i, d in enumerate(self.deliveries)]
        for t in senders:
            t.start()
        log.info("shipper started", how=how, search=self.search.url, pipelines=sorted(self.router.pipelines),
                 batch_size=self.settings.batch_size, senders=len(senders))
        last = Batch()
        try:
            last = self._read_loop()
        finally:
            clean = self._shutdown(senders, last)
            self.source.close()
        return 0 if clean else 1

    def _read_loop(self) -> Batch:
        """Read until stopped; returns the batch being filled, for shutdown to send."""
        s = self.settings
        batch = Batch()
        next_metrics = time.monotonic() + s.metrics_interval
        last_activity = time.monotonic()
        newest_us = 0
        source, joiner, build = self.source, self.joiner, self.builder.build
        while not self._stop.is_set() and self._sender_error is None:
            before = source.last_cursor
            entry = source.next_entry()
            now = time.monotonic()
            self._at_end = entry is None
            if entry is not None:
                last_activity = now
                newest_us = entry.realtime_us
                if not batch.entries:
                    batch.first_realtime_us = entry.realtime_us
                batch.entries += 1
                events = joiner.feed(entry, before)
                if events:
                    if not batch.docs:
                        batch.started = now
                    for event in events:
                        doc = build(event)
                        batch.docs.append(doc)
                        batch.size += len(doc.action) + len(doc.source)
                if (len(batch.docs) >= s.batch_size or batch.size >= s.batch_bytes
                        or (batch.docs and now - batch.started >= s.flush_interval)):
                    batch = self._hand_off(batch)
            else:
                if joiner.open_chains:
                    self._add_stale(batch, newest_us or int(time.time() * 1e6), now)
                if batch.docs and now - batch.started >= s.flush_interval:
                    batch = self._hand_off(batch)
                elif (self.until_idle is not None and not batch.docs and not joiner.open_chains
                      and now - last_activity >= self.until_idle and self._idle()):
                    log.info("journal idle and everything acknowledged; stopping", idle_s=self.until_idle)
                    return batch
                else:
                    remaining = s.flush_interval - (now - batch.started) if batch.docs else 0.5
                    source.wait(max(0.01, min(remaining, 0.5)))
            if now >= next_metrics:
                next_metrics = now + s.metrics_interval
                self._report(batch)
        return batch

    def _add_stale(self, batch: Batch, newest_us: int, now: float) -> None:
        """Split lines whose last piece is overdue go out as they are, flagged incomplete."""
        stale = self.joiner.flush_stale(newest_us)
        if stale and not batch.docs:
            batch.started = now
        for event in stale:
            doc = self.builder.build(event)
            batch.docs.append(doc)
            batch.size += len(doc.action) + len(doc.source)

    def _hand_off(self, batch: Batch) -> Batch:
        """Queue BATCH for sending; returns a fresh one."""
        batch.cursor = self.joiner.safe_cursor(self.source.last_cursor)
        batch.last_realtime_us = batch.docs[-1].realtime_us if batch.docs else None
        batch.seq = self._handed_off
        self._handed_off += 1
        self.backlog.handed_off(batch.seq, batch.first_realtime_us)
        self.metrics.add(entries_read=batch.entries, events_read=len(batch.docs))
        # Blocks while the engine is away: this is where reading stops and memory stays bounded.
        while True:
            try:
                self._queue.put(batch, timeout=0.5)
                break
            except queue.Full:
                if self._stop.is_set():
                    # Not sent, cursor not moved: these entries are read again on the next start.
                    return Batch()
                if time.monotonic() >= self._next_blocked_report:
                    self._next_blocked_report = time.monotonic() + self.settings.metrics_interval
                    self._report(batch)
        return Batch()

    def _idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    # --- the sending thread -----------------------------------------------------------------

    def _send_loop(self, delivery: Delivery) -> None:
        try:
            while True:
                item = self._queue.get()
                try:
                    if item is _STOP:
                        return
                    assert isinstance(item, Batch)
                    if item.docs:
                        delivery.deliver(item.docs)
                    self.backlog.accepted(item.seq)
                    self._commit(item)
                finally:
                    self._queue.task_done()
        except Aborted as exc:
            log.warning("stopped before the engine accepted a batch; it will be read again", reason=str(exc))
        except BaseException as exc:  # surfaced by the reading thread, which then stops
            self._sender_error = exc
            log.error("sending failed", exc_info=exc, error=str(exc))

    def _commit(self, batch: Batch) -> None:
        """Save the cursor of the newest batch that has no unaccepted batch before it."""
        with self._commit_lock:
            self._done[batch.seq] = batch
            cursor, realtime = None, None
            while self._next_commit in self._done:
                ready = self._done.pop(self._next_commit)
                self._next_commit += 1
                cursor = ready.cursor or cursor
                realtime = ready.last_realtime_us or realtime
            if cursor is not None:
                self.cursors.save(cursor)
                self.metrics.set(cursor=cursor)
            if realtime is not None:
                self.metrics.acked_realtime_us = realtime

    # --- shutdown and metrics ---------------------------------------------------------------

    def _shutdown(self, senders: list[threading.Thread], last: Batch) -> bool:
        self._stop.set()
        deadline = time.monotonic() + self.settings.shutdown_timeout
        # What was read goes out too if the engine takes it in time; if not, those entries are
        # after the saved cursor and are simply read again on the next start.
        pending: list[object] = [_STOP] * len(senders)
        if last.docs:
            last.cursor = self.joiner.safe_cursor(self.source.last_cursor)
            last.last_realtime_us = last.docs[-1].realtime_us
            last.seq = self._handed_off
            self._handed_off += 1
            self.backlog.handed_off(last.seq, last.first_realtime_us)
            self.metrics.add(entries_read=last.entries, events_read=len(last.docs))
            pending.insert(0, last)
        while pending and any(t.is_alive() for t in senders):
            try:
                self._queue.put(pending[0], timeout=0.2)
                pending.pop(0)
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        for t in senders:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in senders):
            self._abort.set()
            for t in senders:
                t.join(5.0)
        clean = not self._abort.is_set() and self._sender_error is None
        self.metrics.set(state="stopped")
        data = self._report()
        log.info("shipper stopped", clean=clean, cursor=data.get("cursor"), sent=data["events_sent"],
                 dead_lettered=data["events_failed"], unsent=data["buffered"])
        return clean

    def _report(self, filling: Batch | None = None) -> dict[str, object]:
        newest = None
        try:
            newest = self.source.newest_realtime_us()
        except OSError:
            pass
        acked = self.metrics.acked_realtime_us
        oldest = self.backlog.oldest_us(filling.first_realtime_us if filling is not None else None)
        # Nothing selected at all, or everything read is accepted and the journal has nothing more.
        caught_up = newest is None or (self._at_end and self.metrics.snapshot()["buffered"] == 0)
        between = round(max(0, newest - acked) / 1e6, 3) if newest is not None and acked is not None else None
        self.metrics.set(lag_seconds=lag_seconds(int(time.time() * 1e6), oldest, caught_up, between))
        data = self.metrics.write()
        log.info("shipper metrics", **{k: data[k] for k in (
            "events_read", "events_sent", "events_failed", "events_retried", "buffered", "lag_seconds", "state")})
        return data
