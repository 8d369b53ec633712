"""Write metric samples off the event loop: one thread, batched transactions, retention.

The runners' sample loops share the event loop with the supervisors' heartbeats (every 50 ms),
so they only enqueue (:meth:`SampleWriter.submit` never blocks); this thread writes whatever
is queued in one transaction, and runs the retention pass every ``policy.period`` seconds in
short transactions of its own. A database error is logged and the batch dropped: samples are
measurements, not state (the protection's state is written by the runner itself).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from colopp_api.db.models import Event, MetricSample, Protection
from colopp_api.db.retention import PassReport, RetentionPolicy, run_retention
from colopp_api.db.store import Store

log = logging.getLogger("colopp_api")

#: At most this many queued samples per transaction.
BATCH = 256


@dataclass
class SampleWrite:
    """One sample, its events and the protection's latest checkpoint figures."""

    protection_id: str
    t: float
    sample: dict[str, Any]
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    protection_fields: dict[str, Any] = field(default_factory=dict)


class SampleWriter:
    """The writer thread (:meth:`start`, :meth:`submit`, :meth:`flush`, :meth:`close`)."""

    def __init__(
        self, store: Store, policy: RetentionPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.last_pass: PassReport | None = None
        self._queue: queue.Queue[SampleWrite | None] = queue.Queue()
        self._done: dict[tuple[str, int], float] = {}
        self._thread = threading.Thread(target=self._run, name="colopp-sample-writer", daemon=True)
        self._next_pass = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def submit(self, write: SampleWrite) -> None:
        """Queue a sample (returns at once)."""
        self._queue.put_nowait(write)

    def flush(self) -> None:
        """Wait until everything submitted so far is written (tests; shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put_nowait(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            wait = max(0.0, self._next_pass - time.monotonic())
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                self._retention()
                continue
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [w for w in batch if w is not None]
            try:
                self._write(writes)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(writes) < len(batch):
                return
            if time.monotonic() >= self._next_pass:
                self._retention()

    def _write(self, writes: list[SampleWrite]) -> None:
        if not writes:
            return
        latest: dict[str, dict[str, Any]] = {}
        try:
            with self.store.session() as s, s.begin():
                for w in writes:
                    s.add(MetricSample(protection_id=w.protection_id, t=w.t, data=w.sample))
                    s.add_all(
                        Event(protection_id=w.protection_id, t=t, type=k, data=d)
                        for t, k, d in w.events
                    )
                    latest.setdefault(w.protection_id, {}).update(w.protection_fields)
                for pid, fields in latest.items():
                    if fields:
                        fields["updated_at"] = time.time()
                        s.execute(update(Protection).where(Protection.id == pid).values(**fields))
        except SQLAlchemyError as exc:
            log.warning("could not write %d metric samples: %s", len(writes), exc)

    def _retention(self) -> None:
        self._next_pass = time.monotonic() + self.policy.period
        try:
            self.last_pass = run_retention(self.store, self.policy, self.clock(), self._done)
        except SQLAlchemyError as exc:
            log.warning("metric retention pass failed: %s", exc)
            return
        report = self.last_pass
        if report.merged or report.dropped or report.events_dropped:
            log.info(
                "retention: %d samples merged, %d dropped, %d events dropped",
                report.merged,
                report.dropped,
                report.events_dropped,
            )
