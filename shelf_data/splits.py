"""The three splits ImportExampleGen writes, and what each one is for: their one definition.

* ``train``: fitting (and the pusher's int8 calibration images);
* ``validation``: what the Trainer watches: early stopping, the learning-rate
  schedule and the best checkpoint;
* ``eval``: photos the Trainer never looked at: the Evaluator's gate, the
  TFLite verification and the golden samples.

Keeping ``validation`` apart from ``eval`` keeps the gate honest: weights
chosen because they did well on the validation photos are blessed on others.
"""

from __future__ import annotations

TRAIN, VALIDATION, EVAL = "train", "validation", "eval"
ALL: tuple[str, ...] = (TRAIN, VALIDATION, EVAL)
