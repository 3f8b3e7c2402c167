"""An emulated provider's runs: the submitted generations, a thread each, and the `workers` slots they share.

A run waits in the queue (`queue_seconds`), takes one of the `workers` slots, works (`delay_seconds`) and
ends; every wait gives up as soon as the run is canceled, misses its time-to-start deadline, or the emulator
stops. What a run produces and how it answers is the emulator's (fal.py, mirako.py).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from devstack.emulators.settings import SettingsStore

logger = logging.getLogger("devstack.emulators")

_POLL_SECONDS = 0.05  # how often a waiting run looks for a cancel or a stop


@dataclass
class Run:
    """One submitted generation: what the runs of both emulators have in common."""

    request_id: str
    webhook_url: str | None
    submitted_at: float = field(default_factory=time.time)
    status: str = "IN_QUEUE"
    started_at: float | None = None
    finished_at: float | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    webhook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Decided at submit time, so a test that sets "the next N" knows which requests they hit.
    inject_failure: bool = False
    drop_webhook: bool = False
    media_errors: bool = False  # its result file answers 503 on every download
    submit_answer: str = "answered"  # or how the submit's answer was lost: "dropped", "gateway_502", "gateway_504"
    # A provider's time-to-start deadline (time.monotonic()): a run still IN_QUEUE then never starts.
    start_deadline: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def start_overdue(self) -> bool:
        return self.status == "IN_QUEUE" and self.start_deadline is not None and time.monotonic() >= self.start_deadline

    def fault_record(self) -> dict[str, Any]:
        """The faults injected into this run, for the record (both emulators)."""
        return {
            "failure_injected": self.inject_failure,
            "webhook_dropped": self.drop_webhook,
            "media_errors": self.media_errors,
            "submit_answer": self.submit_answer,
        }

    def log(self, message: str) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        self.logs.append({"message": message, "level": "INFO", "source": "USER", "timestamp": when})


class Runs:
    """The runs of one emulator, by request id, in the order submitted."""

    def __init__(self, provider: str, settings: SettingsStore, stopping: threading.Event) -> None:
        self._provider = provider
        self._settings = settings
        self._stopping = stopping
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._threads: list[threading.Thread] = []
        self._slots = threading.Condition()
        self._running = 0

    def add(self, run: Run, work: Callable[[], None]) -> None:
        """Records a new run and starts its thread, which calls `work`."""
        thread = threading.Thread(target=self._guarded(run, work), name=f"{self._provider}-run-{run.request_id}")
        thread.daemon = True
        with self._lock:
            self._runs[run.request_id] = run
            self._threads = [alive for alive in self._threads if alive.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _guarded(self, run: Run, work: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                work()
            except Exception:  # a bug in a run must not die silently in its thread
                logger.exception("%s emulator: run %s crashed", self._provider, run.request_id)

        return target

    def get(self, request_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(request_id)

    def all(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def queue_position(self, run: Run) -> int:
        with self._lock:
            return sum(
                1
                for other in self._runs.values()
                if other.status == "IN_QUEUE" and other.submitted_at < run.submitted_at
            )

    def wait(self, run: Run, seconds: float) -> bool:
        """Sleeps `seconds`; False as soon as the run is canceled, misses its start deadline or the emulator stops."""
        deadline = time.monotonic() + seconds
        while not self._interrupted(run):
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            run.cancel_requested.wait(min(left, _POLL_SECONDS))
        return False

    def _interrupted(self, run: Run) -> bool:
        return run.cancel_requested.is_set() or self._stopping.is_set() or run.start_overdue()

    @contextmanager
    def worker_slot(self, run: Run) -> Iterator[bool]:
        """A place among the `workers` runs that may run at once; yields False if interrupted while waiting."""
        acquired = self._acquire_slot(run)
        try:
            yield acquired and not self._interrupted(run)
        finally:
            if acquired:
                with self._slots:
                    self._running -= 1
                    self._slots.notify()

    def _acquire_slot(self, run: Run) -> bool:
        with self._slots:
            while self._running >= self._settings.current().workers:
                if self._interrupted(run):
                    return False
                self._slots.wait(_POLL_SECONDS)
            self._running += 1
            return True

    def stop(self, join_seconds: float) -> None:
        """Wakes the runs waiting for a slot (the emulator is stopping) and waits for their threads (bounded)."""
        with self._slots:
            self._slots.notify_all()
        deadline = time.monotonic() + join_seconds
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
