"""A heartbeat for long stages: ``Evaluator still running, 1:30 elapsed`` every half minute.

TFX logs one line when a component starts (``Component Evaluator is running.``)
and one when it finishes; in between a stage such as the Evaluator or Transform
can be silent for minutes. :class:`StageHeartbeat` is a logging handler that
watches those two lines and, while a stage runs, logs its elapsed time every
``every`` seconds from a daemon thread.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from shelf_model.durations import format_duration

log = logging.getLogger("shelf_audit.run")

_RUNNING = re.compile(r"^Component (\S+) is running\.")
_FINISHED = re.compile(r"^Component (\S+) is finished\.")


class StageHeartbeat(logging.Handler):
    """Log ``<stage> still running, <elapsed> elapsed`` every ``every`` seconds while a stage runs."""

    def __init__(self, every: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(level=logging.INFO)
        self.every = every
        self.clock = clock
        self._running: dict[str, float] = {}  # stage -> start time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        started = _RUNNING.match(message)
        finished = _FINISHED.match(message)
        with self._lock:
            if started:
                self._running[started.group(1)] = self.clock()
            elif finished:
                self._running.pop(finished.group(1), None)

    def beat(self) -> list[str]:
        """The heartbeat lines due now (one per running stage); logged by the thread, returned for tests."""
        now = self.clock()
        with self._lock:
            running = sorted(self._running.items(), key=lambda item: item[1])
        lines = [f"{stage} still running, {format_duration(now - start)} elapsed" for stage, start in running]
        for line in lines:
            log.info("%s", line)
        return lines

    def start(self, logger: logging.Logger | None = None) -> StageHeartbeat:
        """Attach to ``logger`` (absl's, where TFX logs stage starts) and start the thread."""
        (logger or logging.getLogger("absl")).addHandler(self)
        self._thread = threading.Thread(target=self._loop, name="stage-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, logger: logging.Logger | None = None) -> None:
        """Detach and stop the thread."""
        (logger or logging.getLogger("absl")).removeHandler(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                due = bool(self._running)
            if due:
                self.beat()
