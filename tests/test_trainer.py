"""Unit tests of the Trainer module: class weights, mixed precision switch, input pipeline, and a run_fn smoke test.

The smoke test runs the real ``run_fn`` (train two steps, export) over
hand-written transformed examples and a real Transform graph built with
tf.Transform on Beam's DirectRunner from the curated schema and
``preprocessing_fn``, then checks the exported signatures.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from PIL import Image
from tfx import v1 as tfx

from pipeline.config import TrainingConfig
from shelf_data import contract
from shelf_data.validate import load_schema
from shelf_model import features, preprocessing, trainer
from shelf_model import model as model_lib
from shelf_tflite import tasks  # its NumPy BT.601 reference, independent of the signature's TF code

pytestmark = pytest.mark.component

SIZE = 128
BRIGHTNESS = (40, 128, 215)  # per class, so the pixels carry the label


def _images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    base = np.array(BRIGHTNESS)[labels].reshape(-1, 1, 1, 1)
    images = np.clip(base + rng.integers(-30, 31, (count, SIZE, SIZE, 1)), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _write_transformed(path: Path, images: np.ndarray, labels: np.ndarray) -> str:
    """Transform-shaped TFRecords, GZIP when the name ends in .gz: ``pixels`` (serialized uint8 tensor), ``label``."""
    with tf.io.TFRecordWriter(str(path), options="GZIP" if path.name.endswith(".gz") else None) as writer:
        for image, label in zip(images, labels, strict=True):
            feature = {
                features.PIXELS_KEY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(tf.constant(image)).numpy()])
                ),
                features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                features.LANE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


@dataclasses.dataclass(frozen=True)
class Transformed:
    """Train and eval transformed example files and what they hold."""

    train_files: list[str]
    eval_files: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray


@pytest.fixture(scope="module")
def transformed(tmp_path_factory) -> Transformed:
    root = tmp_path_factory.mktemp("transformed")
    images, labels = _images(16, seed=1)
    # Two train shards, as Transform writes them.
    train = [_write_transformed(root / f"train-{i}.gz", images[i::2], labels[i::2]) for i in range(2)]
    # Files are read in sorted order: keep the expected order in step with it.
    order = np.concatenate([np.arange(16)[0::2], np.arange(16)[1::2]])
    eval_files = [_write_transformed(root / "eval.gz", *_images(8, seed=2))]
    return Transformed(train, eval_files, images[order], labels[order])


def _collect(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


# --- Small pure functions ---------------------------------------------------------


def test_class_weight_by_id_maps_names_to_label_ids():
    weights = trainer.class_weight_by_id({"damaged": 2.0, "ok": 1.0, "misplaced": 0.5})
    assert weights == {0: 1.0, 1: 0.5, 2: 2.0}
    assert all(isinstance(k, int) for k in weights)


def test_class_weight_by_id_needs_every_class():
    with pytest.raises(KeyError, match="damaged"):
        trainer.class_weight_by_id({"ok": 1.0, "misplaced": 1.0})


def test_training_config_survives_custom_config_json():
    config = TrainingConfig(epochs=3, steps_per_epoch=5, class_weights={"ok": 1.0, "misplaced": 1.5, "damaged": 2.0})
    custom_config = json.loads(json.dumps({"training": dataclasses.asdict(config)}))
    assert trainer.training_config(custom_config) == config


def test_mixed_precision_off_is_a_no_op():
    with mock.patch.object(tf_keras.mixed_precision, "set_global_policy") as set_policy:
        trainer.check_mixed_precision(False)
    set_policy.assert_not_called()
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_mixed_precision_refused_without_gpu():
    assert not tf.config.list_physical_devices("GPU"), "this test expects the GPU-less CI machine"
    with mock.patch.object(tf_keras.mixed_precision, "set_global_policy") as set_policy:
        with pytest.raises(ValueError) as excinfo:
            trainer.check_mixed_precision(True)
    set_policy.assert_not_called()
    message = str(excinfo.value)
    assert "GPU" in message and "training.mixed_precision=false" in message


def test_mixed_precision_on_with_a_gpu():
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    with (
        mock.patch.object(tf.config, "list_physical_devices", return_value=[gpu]),
        mock.patch.object(tf_keras.mixed_precision, "set_global_policy") as set_policy,
    ):
        trainer.check_mixed_precision(True)
    set_policy.assert_called_once_with("mixed_float16")


# --- Input pipeline ---------------------------------------------------------------------


def test_eval_dataset_is_raw_pixels_in_file_order(transformed):
    ds = trainer.make_dataset(transformed.train_files, batch_size=4, image_size=SIZE, training=False)
    assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int64
    x, y = next(iter(ds))
    assert x.shape == (4, SIZE, SIZE, 1) and y.shape == (4,)
    images, labels = _collect(ds)
    assert images.shape == (16, SIZE, SIZE, 1)
    # 0..255, exactly the stored pixels: no scaling in the input pipeline.
    np.testing.assert_array_equal(images, transformed.train_images.astype(np.float32))
    np.testing.assert_array_equal(labels, transformed.train_labels)
    assert images.max() > 200


def test_training_dataset_shuffles_without_augmentation(transformed):
    ds = trainer.make_dataset(
        transformed.train_files, batch_size=4, image_size=SIZE, training=True, seed=3, do_augment=False
    )
    images, labels = _collect(ds)
    assert sorted(labels.tolist()) == sorted(transformed.train_labels.tolist())
    # The same images, in another order.
    originals = transformed.train_images.reshape(16, -1).astype(np.float32)
    matches = [int(np.flatnonzero((originals == img.reshape(-1)).all(axis=1))[0]) for img in images]
    assert sorted(matches) == list(range(16)) and matches != list(range(16))
    np.testing.assert_array_equal(labels, transformed.train_labels[matches])


def test_augmentation_changes_images_but_keeps_shape_range_and_labels(transformed):
    ds = trainer.make_dataset(transformed.train_files, batch_size=4, image_size=SIZE, training=True, seed=3)
    images, labels = _collect(ds)
    assert images.shape == (16, SIZE, SIZE, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0 and images.max() > 1.0
    originals = transformed.train_images.astype(np.float32)
    for image in images:
        assert np.min(np.abs(originals - image).mean(axis=(1, 2, 3))) > 0.5
    # Brightness jitter and shifts stay small: each image keeps its class's brightness.
    np.testing.assert_array_equal(np.abs(images.mean(axis=(1, 2, 3))[:, None] - BRIGHTNESS).argmin(axis=1), labels)
    # A second epoch draws new augmentations.
    again, _ = _collect(ds)
    assert not np.array_equal(np.sort(images.reshape(16, -1), axis=0), np.sort(again.reshape(16, -1), axis=0))


def test_repeat_keeps_going(transformed):
    ds = trainer.make_dataset(transformed.eval_files, batch_size=4, image_size=SIZE, training=False, repeat=True)
    assert len(list(ds.take(5))) == 5  # 8 examples = 2 batches per pass


def test_no_files_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no transformed examples"):
        trainer.make_dataset([str(tmp_path / "*.gz")], batch_size=4, image_size=SIZE, training=False)


def test_cache_plan_keeps_images_in_memory_until_the_limit():
    # 64 images of 128x128 bytes are exactly 1 MiB.
    assert trainer.cache_plan("auto", 64, SIZE, limit_mb=1) == "memory"
    assert trainer.cache_plan("auto", 65, SIZE, limit_mb=1) == "disk"
    assert trainer.cache_plan("auto", 1, SIZE, limit_mb=0) == "disk"
    for choice in ("memory", "disk", "none"):
        assert trainer.cache_plan(choice, 10**9, SIZE, limit_mb=1) == choice
    with pytest.raises(ValueError, match="training.cache must be one of"):
        trainer.cache_plan("ram", 1, SIZE, limit_mb=1)


def test_count_records(transformed):
    assert trainer.count_records(transformed.train_files) == 16
    assert trainer.count_records(transformed.eval_files) == 8


def test_plain_records_read_as_gzip_ones_and_a_mixed_split_is_refused(transformed, tmp_path):
    # Transform writes plain *.tfrecord files now; models trained on older (*.gz) outputs still retrain.
    plain = [_write_transformed(tmp_path / "p-0.tfrecord", transformed.train_images, transformed.train_labels)]
    assert trainer.count_records(plain) == 16
    images, labels = _collect(trainer.make_dataset(plain, 4, SIZE, training=False, cache="none"))
    np.testing.assert_array_equal(images, transformed.train_images.astype(np.float32))
    np.testing.assert_array_equal(labels, transformed.train_labels)
    with pytest.raises(ValueError, match=r"mixed compression: 1 GZIP file\(s\) \(e\.g\. .*train-0\.gz\)"):
        trainer.count_records(plain + transformed.train_files[:1])


def test_compression_type_goes_by_the_file_names():
    assert features.compression_type(["a/x-00000-of-00002.gz", "a/x-00001-of-00002.gz"]) == "GZIP"
    assert features.compression_type(["a/x-00000-of-00001.tfrecord", "b/y"]) == ""
    assert features.compression_type([]) == ""
    mixed = r"1 GZIP file\(s\) \(e\.g\. a\.gz\) and 1 uncompressed \(e\.g\. b\.tfrecord\)"
    with pytest.raises(ValueError, match=mixed):
        features.compression_type(["a.gz", "b.tfrecord"])


def test_disk_cache_gives_the_same_pixels_and_is_read_back(transformed, tmp_path):
    import shutil

    copies = []
    for i, f in enumerate(transformed.train_files):
        copies.append(str(tmp_path / f"shard-{i}.gz"))
        shutil.copy(f, copies[-1])
    prefix = str(tmp_path / "cache" / "train")
    (tmp_path / "cache").mkdir()
    ds = trainer.make_dataset(copies, 4, SIZE, training=False, cache=prefix)
    images, labels = _collect(ds)
    np.testing.assert_array_equal(images, transformed.train_images.astype(np.float32))
    written = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(name.startswith("train") and name.endswith(".index") for name in written), written
    # The second pass reads the cache file: the TFRecords are gone.
    for f in copies:
        Path(f).unlink()
    again, again_labels = _collect(ds)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_labels, labels)
    uncached = trainer.make_dataset(transformed.train_files, 4, SIZE, training=False, cache="none")
    np.testing.assert_array_equal(_collect(uncached)[0], images)


@pytest.mark.parametrize(
    "limit_mb, expected",
    [(2048, {"train": "memory", "validation": "memory"}), (0, {"train": "disk", "validation": "disk"})],
)
def test_cache_targets_follow_the_limit_and_clean_up(transformed, tmp_path, caplog, limit_mb, expected):
    import contextlib
    import logging

    config = TrainingConfig(cache_memory_limit_mb=limit_mb, cache_dir=str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger=trainer.__name__)
    with contextlib.ExitStack() as stack:
        train, validation = trainer._cache_targets(config, transformed.train_files, transformed.eval_files, stack)
        targets = {"train": train, "validation": validation}
        for split, where in expected.items():
            if where == "disk":
                assert Path(targets[split]).parent.parent == tmp_path / "cache"
                assert Path(targets[split]).parent.is_dir()
            else:
                assert targets[split] == where
    # The run's cache folder is removed when training ends, the parent stays.
    assert not list((tmp_path / "cache").glob("shelf-audit-cache-*"))
    assert "train split: 16 images (0 MB decoded), cache: " in caplog.text


def test_both_splits_share_one_memory_budget(transformed, tmp_path):
    import contextlib

    # 64 images of 128x128 are 1 MiB each split: a 1 MiB budget holds the train split, not the validation split too.
    config = TrainingConfig(cache_memory_limit_mb=1, cache_dir=str(tmp_path))
    with contextlib.ExitStack() as stack, mock.patch.object(trainer, "count_records", return_value=64):
        train, validation = trainer._cache_targets(config, transformed.train_files, transformed.eval_files, stack)
        assert train == "memory" and validation.endswith("validation")


def test_capped_validation_is_not_cached_on_disk(transformed):
    import contextlib

    config = TrainingConfig(cache="disk", eval_steps=1)
    with contextlib.ExitStack() as stack:
        train, validation = trainer._cache_targets(config, transformed.train_files, transformed.eval_files, stack)
        assert validation == "none" and train.endswith("train")


# --- run_fn smoke test: train two steps, export, call every signature ---------------------


def _png(value: int, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    pixels = np.clip(value + np.random.default_rng(value).integers(-20, 21, (size[1], size[0])), 0, 255)
    Image.fromarray(pixels.astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def _build_transform_graph(out: Path) -> str:
    """A real Transform output (transform_fn, transformed and raw metadata) from the curated schema."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata

    raw_metadata = dataset_metadata.DatasetMetadata(load_schema())
    raw = [
        {
            contract.IMAGE_KEY: [_png(100, (80, 64))],
            contract.LABEL_KEY: [1],
            contract.LANE_KEY: [3],
            contract.DEVICE_KEY: [b"tc52-a"],
            contract.CAPTURED_AT_KEY: [],
            contract.LIGHTING_KEY: [],
        }
    ]
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(out / "tmp")):
        transform_fn = (pipeline | beam.Create(raw), raw_metadata) | tft_beam.AnalyzeDataset(
            preprocessing.preprocessing_fn
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(out))
        _ = raw_metadata | tft_beam.WriteMetadata(str(out / tft.TFTransformOutput.RAW_METADATA_DIR), pipeline)
    return str(out)


def _calibrating(real_train):
    """Wrap ``train`` to re-estimate BatchNorm statistics on one batch after fitting.

    Two steps leave MobileNetV3's moving statistics at their init, where its
    features are ~1e-10 and every image gets the same probabilities; that
    would make the signature agreement checks below vacuous.
    """

    def wrapped(config, train_files, eval_files, model_run_dir):
        model, history = real_train(config, train_files, eval_files, model_run_dir)
        backbone = model_lib.backbone_of(model)
        model_lib.set_batchnorm_momentum(backbone, 0.0)
        x, _ = next(iter(trainer.make_dataset(train_files, 16, config.image_size, training=False)))
        backbone(x, training=True)
        model_lib.set_batchnorm_momentum(backbone, config.batchnorm_momentum)
        return model, history

    return wrapped


@dataclasses.dataclass(frozen=True)
class Exported:
    fn_args: tfx.components.FnArgs
    config: TrainingConfig


@pytest.fixture(scope="module")
def exported(transformed, tmp_path_factory) -> Exported:
    root = tmp_path_factory.mktemp("trainer")
    config = TrainingConfig(epochs=1, steps_per_epoch=2, eval_steps=1, batch_size=4, shuffle_buffer=16)
    fn_args = tfx.components.FnArgs(
        train_files=transformed.train_files,
        eval_files=transformed.eval_files,
        transform_output=_build_transform_graph(root / "transform_graph"),
        serving_model_dir=str(root / "serving_model"),
        model_run_dir=str(root / "model_run"),
        custom_config=json.loads(json.dumps({"training": dataclasses.asdict(config)})),
    )
    with mock.patch.object(trainer, "train", side_effect=_calibrating(trainer.train)) as train:
        trainer.run_fn(fn_args)
    train.assert_called_once()
    return Exported(fn_args, config)


def test_run_fn_writes_summary_checkpoint_and_logs(exported):
    run_dir = Path(exported.fn_args.model_run_dir)
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert summary["seed"] == exported.config.seed and summary["epochs_run"] == 1
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(summary["history"])
    assert all(np.isfinite(summary["history"]["loss"]))
    assert list((run_dir / "checkpoints").glob("best*"))
    assert list((run_dir / "logs").rglob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def saved(exported):
    """The exported SavedModel, loaded once."""
    return tf.saved_model.load(exported.fn_args.serving_model_dir)


def test_export_has_the_four_signatures(saved):
    assert set(saved.signatures) == {
        features.SERVING_SIGNATURE,
        features.TRANSFORM_SIGNATURE,
        features.IMAGE_SIGNATURE,
        features.RGB_SIGNATURE,
    }
    rgb_sig = saved.signatures[features.RGB_SIGNATURE]
    (rgb_spec,) = rgb_sig.structured_input_signature[1].values()
    assert list(rgb_sig.structured_input_signature[1]) == [features.IMAGE_INPUT]
    assert rgb_spec.shape.as_list() == [None, SIZE, SIZE, 3] and rgb_spec.dtype == tf.uint8
    image_sig = saved.signatures[features.IMAGE_SIGNATURE]
    (spec,) = image_sig.structured_input_signature[1].values()
    assert list(image_sig.structured_input_signature[1]) == [features.IMAGE_INPUT]
    assert spec.shape.as_list() == [None, SIZE, SIZE, 1] and spec.dtype == tf.float32
    assert image_sig.structured_outputs[features.PROBABILITIES].shape.as_list() == [None, 3]


def test_signatures_agree_on_raw_examples(saved):
    photos = [_png(30, (300, 97)), _png(128, (64, 64)), _png(230, (97, 300))]
    # Serving examples: no label, and the optional lighting only on one of them.
    records = [contract.PhotoRecord(photo, 0, 1 + i, "tc52-a") for i, photo in enumerate(photos)]
    records[1] = dataclasses.replace(records[1], lighting="dim")
    serving = [contract.make_example(r) for r in records]
    for example in serving:
        del example.features.feature[contract.LABEL_KEY]
    served = saved.signatures[features.SERVING_SIGNATURE](
        examples=tf.constant([e.SerializeToString() for e in serving])
    )[features.PROBABILITIES].numpy()
    assert served.shape == (3, 3)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)
    pixels = tf.stack([tf.cast(preprocessing.decode_and_resize(p), tf.float32) for p in photos])
    from_image = saved.signatures[features.IMAGE_SIGNATURE](image=pixels)[features.PROBABILITIES].numpy()
    np.testing.assert_allclose(served, from_image, atol=1e-5)
    # Different pixels, different outputs: the agreement above is not a constant model's.
    assert np.abs(from_image[0] - from_image[2]).max() > 1e-4
    # The transform signature (what TFMA slices on) on labelled examples.
    labelled = [contract.make_example(r).SerializeToString() for r in records]
    out = saved.signatures[features.TRANSFORM_SIGNATURE](examples=tf.constant(labelled))
    assert out[features.LABEL_KEY].numpy().tolist() == [0, 0, 0]
    assert out[features.LANE_KEY].numpy().tolist() == [1, 2, 3]
    assert out[features.LIGHTING_KEY].numpy().tolist() == [b"unknown", b"dim", b"unknown"]
    np.testing.assert_array_equal(preprocessing.parse_pixels_batch(out[features.PIXELS_KEY]).numpy(), pixels.numpy())


def test_rgb_signature_is_the_image_signature_on_bt601_gray(saved):
    rng = np.random.default_rng(3)
    base = np.array([30, 128, 230]).reshape(3, 1, 1, 1)
    frames = np.clip(base + rng.integers(-60, 61, size=(3, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    from_rgb = saved.signatures[features.RGB_SIGNATURE](image=tf.constant(frames))[features.PROBABILITIES].numpy()
    from_gray = saved.signatures[features.IMAGE_SIGNATURE](image=tf.constant(tasks.gray_of_rgb(frames)))
    # A pixel whose luma sits at x.5 may round the other way (summation order): one gray level, ~1e-4.
    np.testing.assert_allclose(from_rgb, from_gray[features.PROBABILITIES].numpy(), atol=1e-3)
    assert np.abs(from_rgb[0] - from_rgb[2]).max() > 1e-4  # not a constant model
