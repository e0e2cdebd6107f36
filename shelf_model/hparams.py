"""Training hyperparameters: one frozen dataclass shared by the config loader and the Trainer's ``run_fn``.

It lives with the model code so that the code running inside the Trainer
imports nothing from the pipeline package; :mod:`pipeline.config` validates
it together with the other sections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from shelf_data.contract import CLASS_WEIGHTS

# training.cache: where the Trainer keeps decoded images (see shelf_model.trainer.cache_plan).
CACHE_CHOICES = ("auto", "memory", "disk", "none")
# The side of the square gray image the model takes (training.image_size).
DEFAULT_IMAGE_SIZE = 128


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Model and optimisation settings for the Trainer."""

    # "none", "imagenet" or a path to a local 3-channel MobileNetV3Small weights file.
    weights: str = "none"
    image_size: int = DEFAULT_IMAGE_SIZE
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 2e-3
    # Only when pretrained: second phase that unfreezes the top of the backbone.
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 2e-4
    fine_tune_layers: int = 30
    # Keras' MobileNetV3 uses BatchNorm momentum 0.999: far too slow for short runs.
    batchnorm_momentum: float = 0.9
    dropout: float = 0.2
    class_weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(CLASS_WEIGHTS))
    augment: bool = True
    early_stopping_patience: int = 3
    # Cap on steps per epoch (None: the whole train split each epoch). Tests use it.
    steps_per_epoch: int | None = None
    eval_steps: int | None = None
    shuffle_buffer: int = 2048
    seed: int = 42
    mixed_precision: bool = False
    # Where decoded images are kept after the first epoch: "auto" (memory while they fit in
    # cache_memory_limit_mb, else a file cache on local disk), "memory", "disk" or "none" (re-read
    # and re-parse the TFRecords every epoch).
    cache: str = "auto"
    cache_memory_limit_mb: int = 2048
    # Folder for the disk cache; empty: a temporary folder on local disk, removed after training.
    cache_dir: str = ""
    # XLA compilation of the training step (tf_keras ``compile(jit_compile=...)``).
    jit_compile: bool = False
