"""Training progress a person can follow: images/s and an ETA while an epoch runs.

On a terminal one status line is redrawn in place (a carriage return) a few times a second;
elsewhere (CI, a log file, a Kubeflow pod) a plain log line is written every
``plain_every`` seconds, so a 3-minute epoch is never silent and a log never
fills with redraws. Each epoch ends with one summary line (loss, accuracy,
validation, images/s, time left for the run).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import tf_keras

from shelf_model.durations import format_duration

log = logging.getLogger("shelf_model.trainer")


class EpochProgress(tf_keras.callbacks.Callback):
    """Progress inside and across epochs, with throughput and an ETA.

    The number of batches in an epoch is ``steps_per_epoch`` when set, else
    what Keras knows (``params["steps"]``), else what the first epoch counted.
    """

    def __init__(
        self,
        batch_size: int,
        epochs: int,
        steps_per_epoch: int | None = None,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        plain_every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.total_epochs = epochs
        self.steps = steps_per_epoch
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            # Behind the CLI's stderr filter fd 2 is a pipe; it remembers whether the user's stderr is a terminal.
            interactive = self.stream.isatty() or (
                self.stream is sys.__stderr__ and os.environ.get("SHELF_AUDIT_STDERR_TTY") == "1"
            )
        self.interactive = interactive
        self.plain_every = plain_every
        self.clock = clock
        self._epoch = 0
        self._epoch_start = 0.0
        self._last_print = 0.0
        self._batches = 0
        self._epoch_seconds: list[float] = []
        self.lines: list[str] = []  # what was reported, for tests and for the curious

    # -- Keras hooks ---------------------------------------------------------------------------------------
    def on_train_begin(self, logs: Any = None) -> None:
        if self.steps is None and self.params:
            self.steps = self.params.get("steps")
        self.total_epochs = (self.params or {}).get("epochs", self.total_epochs)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch
        self._batches = 0
        self._epoch_start = self._last_print = self.clock()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._batches += 1
        now = self.clock()
        every = 0.25 if self.interactive else self.plain_every
        if now - self._last_print >= every:
            self._last_print = now
            self._emit(self.status(now, logs or {}), final=False)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        now = self.clock()
        seconds = max(now - self._epoch_start, 1e-9)
        self._epoch_seconds.append(seconds)
        if self.steps is None:
            self.steps = self._batches
        logs = logs or {}
        metrics = " ".join(
            f"{name} {logs[name]:.4f}" for name in ("loss", "accuracy", "val_loss", "val_accuracy") if name in logs
        )
        left = self.total_epochs - (epoch + 1)
        line = (
            f"epoch {epoch + 1}/{self.total_epochs}: {metrics}; "
            f"{self._batches * self.batch_size / seconds:.0f} images/s, {format_duration(seconds)}"
        )
        if left > 0:
            line += f"; about {format_duration(left * self._mean_epoch())} left for {left} more epoch(s)"
        self._emit(line, final=True)

    # -- text ----------------------------------------------------------------------------------------------
    def _mean_epoch(self) -> float:
        recent = self._epoch_seconds[-3:]
        return sum(recent) / len(recent) if recent else float("nan")

    def status(self, now: float, logs: dict[str, Any]) -> str:
        """The in-epoch line: batch count, images/s, loss so far and the epoch's ETA."""
        elapsed = max(now - self._epoch_start, 1e-9)
        rate = self._batches / elapsed
        of = f"/{self.steps}" if self.steps else ""
        eta = (self.steps - self._batches) / rate if self.steps and rate > 0 else float("nan")
        loss = f", loss {logs['loss']:.4f}" if "loss" in logs else ""
        return (
            f"epoch {self._epoch + 1}/{self.total_epochs}: batch {self._batches}{of}, "
            f"{rate * self.batch_size:.0f} images/s{loss}, epoch ETA {format_duration(eta)}"
        )

    def _emit(self, line: str, final: bool) -> None:
        self.lines.append(line)
        if self.interactive:
            # Redraw one line; the epoch's summary stays on screen.
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
            self.stream.flush()
        else:
            log.info("%s", line)
