"""TFX Trainer ``run_fn``: composes the input pipeline, the model and the export.

Augmentation happens here, in the input function, not in Transform:
Transform runs once, and augmentation must differ every epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx.components.trainer.fn_args_utils import FnArgs

from shelf_data.contract import LABELS
from shelf_model import features, preprocessing
from shelf_model import model as model_lib
from shelf_model.hparams import CACHE_CHOICES, TrainingConfig
from shelf_model.progress import EpochProgress

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


def training_config(custom_config: dict[str, Any]) -> TrainingConfig:
    """Rebuild the frozen TrainingConfig from the Trainer's custom_config."""
    return TrainingConfig(**custom_config["training"])


def class_weight_by_id(weights: dict[str, float]) -> dict[int, float]:
    """tf_keras wants every class id as an int key (custom_config turns keys into strings)."""
    return {i: float(weights[label]) for i, label in enumerate(LABELS)}


def augment(image: tf.Tensor, label: tf.Tensor, seed: int, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Random flip, brightness, contrast and a small shift of one float32 0..255 image."""
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_brightness(image, 25.0)
    image = tf.image.random_contrast(image, 0.8, 1.2)
    pad = max(1, image_size // 16)
    image = tf.pad(image[None], [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")[0]
    image = tf.image.random_crop(image, [image_size, image_size, 1])
    return tf.clip_by_value(image, 0.0, 255.0), label


def _files(file_patterns: list[str]) -> list[str]:
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {file_patterns}")
    return files


def count_records(file_patterns: list[str]) -> int:
    """Number of records in TFRecord files, GZIP or plain (one pass, nothing parsed)."""
    files = _files(file_patterns)
    ds = tf.data.TFRecordDataset(files, compression_type=features.compression_type(files), num_parallel_reads=AUTOTUNE)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


AUTO, MEMORY, DISK, NONE = CACHE_CHOICES


def cache_plan(choice: str, images: int, image_size: int, limit_mb: float) -> str:
    """Where ``images`` decoded uint8 images go: ``memory``, ``disk`` or ``none``.

    ``auto`` keeps them in memory while they fit in ``limit_mb`` (``size * size``
    bytes each: 16 KiB at 128x128, 0.7 GB for 43,000 training photos), else on disk.
    """
    if choice not in CACHE_CHOICES:
        raise ValueError(f"training.cache must be one of {', '.join(CACHE_CHOICES)}. Received cache={choice!r}")
    if choice != AUTO:
        return choice
    return MEMORY if images * image_size * image_size <= limit_mb * 2**20 else DISK


def make_dataset(
    file_patterns: list[str],
    batch_size: int,
    image_size: int,
    training: bool,
    seed: int = 42,
    shuffle_buffer: int = 2048,
    do_augment: bool = True,
    repeat: bool = False,
    cache: str = MEMORY,
) -> tf.data.Dataset:
    """Batches of (float32 pixels 0..255 ``[b, s, s, 1]``, int64 label) from transformed examples.

    Decoded uint8 images are cached after the first pass, so the TFRecords
    are parsed once; shuffling and augmentation run after the cache.
    ``cache`` is ``"memory"``, ``"none"`` or the path prefix of a file cache
    (tf.data writes it during the first epoch and reads it afterwards).
    """
    files = _files(file_patterns)
    spec = {
        features.PIXELS_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, spec)
        return preprocessing.parse_pixels(parsed[features.PIXELS_KEY], image_size), parsed[features.LABEL_KEY]

    ds = tf.data.TFRecordDataset(files, compression_type=features.compression_type(files), num_parallel_reads=AUTOTUNE)
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
    if cache == MEMORY:
        ds = ds.cache()
    elif cache != NONE:
        ds = ds.cache(cache)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and do_augment:
        ds = ds.map(lambda x, y: augment(x, y, seed, image_size), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def check_mixed_precision(enabled: bool) -> None:
    """Turn on mixed precision, refusing it on a machine without a GPU (it only slows a CPU down)."""
    if not enabled:
        return
    if not tf.config.list_physical_devices("GPU"):
        raise ValueError(
            "training.mixed_precision=true needs a GPU and this machine has none; "
            "set training.mixed_precision=false (mixed precision only slows training on a CPU)"
        )
    tf_keras.mixed_precision.set_global_policy("mixed_float16")


class Throughput(tf_keras.callbacks.Callback):
    """Training images/s per epoch, timed over the train batches only (validation excluded)."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.epochs: list[dict[str, float]] = []
        self._start = self._end = 0.0
        self._batches = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start, self._batches = 0.0, 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if not self._start:
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._batches += 1
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        seconds = max(self._end - self._start, 1e-9)
        images = self._batches * self.batch_size
        self.epochs.append({"seconds": seconds, "images": images, "images_per_second": images / seconds})


def _callbacks(model_run_dir: str, patience: int) -> list[tf_keras.callbacks.Callback]:
    return [
        tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        tf_keras.callbacks.ModelCheckpoint(
            os.path.join(model_run_dir, "checkpoints", "best"),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
        ),
        tf_keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
        tf_keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, "logs"), update_freq="epoch"),
    ]


def _compile(model: tf_keras.Model, learning_rate: float, jit_compile: bool = False) -> None:
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def train(
    config: TrainingConfig, train_files: list[str], eval_files: list[str], model_run_dir: str
) -> tuple[tf_keras.Model, dict[str, list[float]]]:
    """Build and fit the model; return it with the merged Keras history.

    The history also holds ``images_per_second`` per epoch (train batches only).
    """
    with contextlib.ExitStack() as stack:
        return _train(config, train_files, eval_files, model_run_dir, stack)


def _cache_targets(
    config: TrainingConfig, train_files: list[str], eval_files: list[str], stack: contextlib.ExitStack
) -> tuple[str, str]:
    """The ``cache`` argument of :func:`make_dataset` for the train and the validation split."""
    if config.cache in (MEMORY, NONE):
        return config.cache, config.cache
    counts = {"train": count_records(train_files), "validation": count_records(eval_files)}
    targets = {}
    # One memory budget for both splits: the train split first, the validation split in what is left.
    budget_mb = float(config.cache_memory_limit_mb)
    for split, n in counts.items():
        where = cache_plan(config.cache, n, config.image_size, budget_mb)
        if where == MEMORY:
            budget_mb -= n * config.image_size**2 / 2**20
        if where == DISK and split == "validation" and config.eval_steps is not None:
            # Keras stops a capped validation pass part-way, which leaves a file cache unfinished.
            where = NONE
        if where == DISK:
            parent = config.cache_dir or None
            if parent:
                tf.io.gfile.makedirs(parent)
            # A fresh folder each run: tf.data would otherwise read an older run's cache file as this one's.
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="shelf-audit-cache-", dir=parent))
            targets[split] = os.path.join(folder, split)
        else:
            targets[split] = where
        mb = n * config.image_size**2 / 2**20
        place = f"on disk in {os.path.dirname(targets[split])}" if where == DISK else where
        log.info("%s split: %d images (%.0f MB decoded), cache: %s", split, n, mb, place)
    return targets["train"], targets["validation"]


def _train(
    config: TrainingConfig,
    train_files: list[str],
    eval_files: list[str],
    model_run_dir: str,
    stack: contextlib.ExitStack,
) -> tuple[tf_keras.Model, dict[str, list[float]]]:
    tf_keras.utils.set_random_seed(config.seed)
    check_mixed_precision(config.mixed_precision)
    size = config.image_size
    repeat = config.steps_per_epoch is not None
    train_cache, eval_cache = _cache_targets(config, train_files, eval_files, stack)
    train_ds = make_dataset(
        train_files,
        config.batch_size,
        size,
        True,
        config.seed,
        config.shuffle_buffer,
        config.augment,
        repeat,
        cache=train_cache,
    )
    eval_ds = make_dataset(eval_files, config.batch_size, size, False, cache=eval_cache)
    model = model_lib.build_model(size, config.weights, config.dropout, config.batchnorm_momentum)
    pretrained = config.weights != "none"
    if pretrained:
        # Phase 1: train the head on a frozen backbone so its random init does not wreck the features.
        model_lib.backbone_of(model).trainable = False
    _compile(model, config.learning_rate, config.jit_compile)
    fit_args = dict(
        validation_data=eval_ds,
        steps_per_epoch=config.steps_per_epoch,
        validation_steps=config.eval_steps,
        class_weight=class_weight_by_id(dict(config.class_weights)),
        verbose=0,  # EpochProgress reports instead: one redrawn line on a terminal, plain lines elsewhere
    )
    throughput = Throughput(config.batch_size)
    progress = EpochProgress(config.batch_size, config.epochs, config.steps_per_epoch)
    callbacks = _callbacks(model_run_dir, config.early_stopping_patience) + [throughput, progress]
    history = model.fit(train_ds, epochs=config.epochs, callbacks=callbacks, **fit_args).history
    if pretrained and config.fine_tune_epochs:
        # Phase 2: fine-tune the top of the backbone with a lower rate.
        model_lib.unfreeze_top(model, config.fine_tune_layers)
        _compile(model, config.fine_tune_learning_rate, config.jit_compile)
        more = model.fit(train_ds, epochs=config.fine_tune_epochs, callbacks=callbacks, **fit_args).history
        history = {k: history.get(k, []) + more.get(k, []) for k in set(history) | set(more)}
    history["images_per_second"] = [e["images_per_second"] for e in throughput.epochs]
    return model, history


def export(model: tf_keras.Model, tf_transform_output: tft.TFTransformOutput, image_size: int, path: str) -> None:
    """Save the SavedModel with the serving, transform, image and RGB image signatures."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != features.LABEL_KEY}

    @tf.function(
        input_signature=[tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name=features.IMAGE_INPUT)]
    )
    def serve_image(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {features.PROBABILITIES: model(image, training=False)}

    # The other signatures call serve_image rather than the model: the SavedModel holds the
    # model's graph once (a smaller file that loads faster), and every signature agrees by construction.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        return serve_image(preprocessing.parse_pixels_batch(transformed[features.PIXELS_KEY], image_size))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return model.tft_layer(tf.io.parse_example(serialized, raw_spec))

    # RGB frames (what a camera and MediaPipe Tasks give): the BT.601 gray the model was trained on,
    # inside the model. The ``tasks`` TFLite variant is converted from this signature.
    @tf.function(
        input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=features.IMAGE_INPUT)]
    )
    def serve_rgb(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return serve_image(preprocessing.gray_of_rgb(image))

    signatures = {
        features.SERVING_SIGNATURE: serve_examples,
        features.TRANSFORM_SIGNATURE: transform_features,
        features.IMAGE_SIGNATURE: serve_image,
        features.RGB_SIGNATURE: serve_rgb,
    }
    # No per-layer traces: every reader (TFMA, the pusher, the converter, the report) uses the
    # signatures, and the traces made the SavedModel 3x larger and 7x slower to load (7 s vs 1 s).
    # Keras can still load it, rebuilding the layers from their config.
    model.save(path, save_format="tf", signatures=signatures, save_traces=False)


def run_fn(fn_args: FnArgs) -> None:
    """TFX entry point: train on the transformed examples, export the SavedModel."""
    config = training_config(fn_args.custom_config)
    log.info("training config: %s", json.dumps(fn_args.custom_config["training"], sort_keys=True))
    model, history = train(config, fn_args.train_files, fn_args.eval_files, fn_args.model_run_dir)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "training_summary.json"), "w") as f:
        plain = {k: [float(v) for v in values] for k, values in history.items()}
        json.dump({"seed": config.seed, "epochs_run": len(plain.get("loss", [])), "history": plain}, f, indent=1)
    export(model, tft.TFTransformOutput(fn_args.transform_output), config.image_size, fn_args.serving_model_dir)
