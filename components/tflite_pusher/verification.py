"""Pusher step 1: the data a push needs, and every variant converted and verified.

Calibration images come from the train split (a reservoir sample), verification
runs on the whole held-out eval split against the SavedModel's own outputs, and
the golden samples are a few eval images per class. The conversion and the
checks themselves are :mod:`shelf_tflite`'s; this module composes
them for a list of variants and keeps what the release step needs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from tfx import types
from tfx.types import artifact_utils

from shelf_data import splits
from shelf_tflite import build, convert, eval_data, runtime, verify

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Images a push works from: uint8 ``[N, H, W, 1]`` pixels as Transform wrote them."""

    representative: np.ndarray  # train images for int8 calibration
    images: np.ndarray  # the eval split
    labels: np.ndarray  # class id of each eval image
    reference: np.ndarray  # the SavedModel's probabilities on ``images``
    golden_index: list[int]  # eval images kept as golden samples

    @property
    def golden_images(self) -> np.ndarray:
        return self.images[self.golden_index]

    @property
    def golden_labels(self) -> np.ndarray:
        return self.labels[self.golden_index]

    @property
    def golden_reference(self) -> np.ndarray:
        return self.reference[self.golden_index]


def load_eval_data(
    model: str | Any, transformed_examples: types.Artifact, representative_count: int, golden_count: int
) -> EvalData:
    """Read calibration (train) and verification (eval) images and run the SavedModel on the eval split.

    Args:
        model: the SavedModel folder, or the model loaded from it (``shelf_tflite.convert.load_saved_model``).
        transformed_examples: Transform's ``transformed_examples`` artifact (``Split-train``, ``Split-eval``).
        representative_count: calibration images to sample from the train split.
        golden_count: golden samples to pick from the eval split (spread over the classes).
    """
    representative = eval_data.sample_split(
        artifact_utils.get_split_uri([transformed_examples], splits.TRAIN), representative_count
    )
    images, labels = eval_data.load_images(artifact_utils.get_split_uri([transformed_examples], splits.EVAL))
    reference = convert.saved_model_predict(model, images)
    golden_index = eval_data.select_golden_indices(labels, golden_count)
    log.info(
        "TFLitePusher: %d calibration images, %d eval images, %d golden samples",
        len(representative),
        len(images),
        len(golden_index),
    )
    return EvalData(representative, images, labels, reference, golden_index)


@dataclasses.dataclass(frozen=True)
class Verified:
    """Every variant's bytes, verification report and probabilities on the eval split, in the order asked for."""

    blobs: dict[str, bytes]
    reports: dict[str, verify.VariantReport]
    # What each variant gave on ``EvalData.images``: the live gate compares them without running the variant again.
    eval_outputs: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def passed(self, variant: str) -> bool:
        return self.reports[variant].passed


def convert_and_verify(
    model_path: str,
    variants: Sequence[str],
    data: EvalData,
    config: verify.VerifyConfig,
    loaded: Any | None = None,
) -> Verified:
    """Convert each variant and check it against the SavedModel, the budgets and the damaged recall.

    ``loaded``: the SavedModel already loaded from ``model_path``, reused by the converters.
    """
    reports: dict[str, verify.VariantReport] = {}
    outputs: dict[str, np.ndarray] = {}
    blobs = build.convert_many(model_path, variants, representative_images=data.representative, loaded=loaded)
    for variant in variants:
        outputs[variant] = runtime.run_tflite(blobs[variant], data.images)
        reports[variant] = verify.verify_variant(
            blobs[variant],
            variant,
            golden_images=data.golden_images,
            golden_reference=data.golden_reference,
            eval_images=data.images,
            eval_labels=data.labels,
            eval_reference=data.reference,
            config=config,
            eval_outputs=outputs[variant],
        )
    for line in verify.summarize(list(reports.values())).splitlines():  # one log line each
        log.info("TFLitePusher verification: %s", line)
    return Verified(blobs, reports, outputs)
