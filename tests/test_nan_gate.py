"""Component tier: NaN never passes the gate.

An eval set without ``misplaced`` photos gives ``recall/misplaced`` = NaN. TFMA
(real ``analyze_raw_data`` over a DataFrame of predictions) must not validate
it, although misplaced has no configured floor and every present class is
recalled perfectly, and the run summary's gate table must read it as failed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from pipeline import run_summary
from pipeline.eval_config import WEIGHTED_RECALL, build_eval_config

pytestmark = pytest.mark.component

WEIGHTS = {"ok": 1.0, "misplaced": 1.0, "damaged": 2.0}


def _predictions(labels: list[int]) -> pd.DataFrame:
    rows = []
    for label in labels:
        probs = np.full(3, 0.1, dtype=np.float32)
        probs[label] = 0.8  # always right
        rows.append({"label": label, "prediction": probs})
    return pd.DataFrame(rows)


def _analyze(df: pd.DataFrame, out: str) -> tfma.EvalConfig:
    config = build_eval_config(WEIGHTS, 0.5, {"damaged": 0.5}, max_drop=None, confidence_intervals=False)
    config.model_specs[0].prediction_key = "prediction"
    config.model_specs[0].signature_name = ""
    tfma.analyze_raw_data(df, config, output_path=out)
    return config


def test_a_class_absent_from_eval_is_nan_and_fails_the_gate(tmp_path):
    config = _analyze(_predictions([0] * 12 + [2] * 6), str(tmp_path))
    validation = tfma.load_validation_result(str(tmp_path))
    assert not validation.validation_ok
    failed = {f.metric_key.name for s in validation.metric_validations_per_slice for f in s.failures}
    assert failed == {"recall/misplaced"}
    rows, _, failures = run_summary.read_gate(str(tmp_path), config)
    by_name = {r.metric: r for r in rows}
    assert math.isnan(by_name["recall/misplaced"].value) and by_name["recall/misplaced"].passed is False
    assert by_name["recall/misplaced"].threshold == ">= 0.000"
    # The present classes pass; the weighted recall leaves the absent class out of its mean.
    assert by_name[WEIGHTED_RECALL].value == 1.0 and by_name[WEIGHTED_RECALL].passed
    assert by_name["recall/ok"].passed and by_name["recall/damaged"].passed
    assert any(f.startswith("recall/misplaced: nan") for f in failures), failures


def test_every_class_present_blesses(tmp_path):
    _analyze(_predictions([0] * 8 + [1] * 4 + [2] * 4), str(tmp_path))
    assert tfma.load_validation_result(str(tmp_path)).validation_ok
