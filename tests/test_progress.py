"""Training progress: the in-epoch status line, the epoch summary with an ETA, terminal vs plain output."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import tf_keras

from shelf_model.durations import format_duration
from shelf_model.progress import EpochProgress

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(progress: EpochProgress, clock: FakeClock, epochs: int, batches: int, seconds_per_batch: float) -> None:
    progress.set_params({"epochs": epochs, "steps": None})
    progress.on_train_begin()
    for epoch in range(epochs):
        progress.on_epoch_begin(epoch)
        for batch in range(batches):
            clock.now += seconds_per_batch
            progress.on_train_batch_end(batch, {"loss": 1.0 / (batch + 1)})
        progress.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.6, "val_accuracy": 0.7})


def test_format_duration():
    assert format_duration(75) == "1:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "?"


def test_plain_output_logs_status_every_interval_and_an_eta_per_epoch(caplog):
    clock = FakeClock()
    stream = io.StringIO()
    progress = EpochProgress(batch_size=32, epochs=3, stream=stream, interactive=False, plain_every=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="shelf_model.trainer"):
        _drive(progress, clock, epochs=3, batches=50, seconds_per_batch=1.0)
    assert stream.getvalue() == ""  # plain mode goes through logging, never raw redraws
    messages = [r.getMessage() for r in caplog.records]
    status = [m for m in messages if "batch" in m]
    # 50 s per epoch, a line every 10 s: 5 per epoch.
    assert len(status) == 15, status
    # The first epoch does not know its length yet; the second does and gives an ETA.
    assert "batch 10," in status[0] and "ETA ?" in status[0]
    assert "batch 10/50" in status[5] and "32 images/s" in status[5] and "epoch ETA 0:40" in status[5]
    summaries = [m for m in messages if "left" in m or m.startswith("epoch 3/3:")]
    assert summaries[0].startswith("epoch 1/3: loss 0.5000 accuracy 0.7500 val_loss 0.6000 val_accuracy 0.7000")
    assert "about 1:40 left for 2 more epoch(s)" in summaries[0]
    assert "left" not in messages[-1]  # the last epoch has nothing left


def test_terminal_output_redraws_one_line():
    clock = FakeClock()
    stream = FakeTTY()
    progress = EpochProgress(batch_size=8, epochs=1, steps_per_epoch=20, stream=stream, clock=clock)
    _drive(progress, clock, epochs=1, batches=20, seconds_per_batch=0.5)
    text = stream.getvalue()
    assert text.count("\r") >= 10
    assert text.count("\n") == 1 and text.endswith("\n")  # only the epoch summary ends a line
    assert "batch 10/20" in text and "16 images/s" in text


def test_reports_during_a_real_keras_fit():
    model = tf_keras.Sequential([tf_keras.layers.Input((4,)), tf_keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.arange(64) % 3
    progress = EpochProgress(batch_size=16, epochs=2, stream=io.StringIO(), interactive=False, plain_every=0.0)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[progress])
    assert any(line.startswith("epoch 2/2: loss") for line in progress.lines)
    assert any("batch 4/4" in line for line in progress.lines)
