"""Benchmark: our TFLite variants against the SavedModel and TFX's stock TFLiteRewriter.

Per variant: bytes, host latency (median batch-1 invocation) at 1 and 2
threads, top-1 agreement and per-class recall vs the SavedModel on the eval
split. Side by side: TFX's ``TFLiteRewriter`` on the same SavedModel and
signature (size and latency ratios).

Model: the newest blessed model of the demo run (``runs/demo``) with that
run's transformed examples, if present; otherwise a MobileNetV3Small
stand-in trained for a few steps on random data (said so in the section:
its recall figures mean nothing, its size and latency are representative).
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile

import numpy as np

DEMO_HOME = "runs/demo"
GOALS = "int8 <= 1.3 MB, fp16 <= 2.1 MB, every variant < 2 ms at 1 thread, damaged recall within 0.02"


def _blessed_model_uris(home: str) -> list[str]:
    """Model URIs the Evaluator blessed, per ML Metadata (empty when unreadable)."""
    dbs = glob.glob(os.path.join(home, "**", "*.sqlite"), recursive=True) + glob.glob(
        os.path.join(home, "**", "*.db"), recursive=True
    )
    uris = []
    for db in dbs:
        try:
            from ml_metadata.metadata_store import metadata_store
            from ml_metadata.proto import metadata_store_pb2

            config = metadata_store_pb2.ConnectionConfig()
            config.sqlite.filename_uri = db
            config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
            store = metadata_store.MetadataStore(config)
            for blessing in store.get_artifacts_by_type("ModelBlessing"):
                props = blessing.custom_properties
                if props.get("blessed") and props["blessed"].int_value == 1 and "current_model" in props:
                    uris.append((blessing.id, props["current_model"].string_value))
        except Exception as error:  # a foreign or locked db: fall back to files
            print(f"bench_tflite: could not read {db}: {error}")
    return [uri for _, uri in sorted(uris)]


def _find_demo(home: str) -> tuple[str, str, str] | None:
    """``(saved_model_dir, examples_uri, how)`` of the demo run, or None."""
    models = glob.glob(os.path.join(home, "**", "Trainer", "model", "*", "Format-Serving"), recursive=True)
    examples = [
        e
        for e in glob.glob(os.path.join(home, "**", "Transform", "transformed_examples", "*"), recursive=True)
        if os.path.isdir(os.path.join(e, "Split-eval"))
    ]
    if not models or not examples:
        return None
    blessed = [os.path.join(uri, "Format-Serving") for uri in _blessed_model_uris(home)]
    blessed = [m for m in blessed if os.path.isdir(m)]
    how = "newest blessed model (ML Metadata)"
    if not blessed:
        blessed, how = sorted(models, key=os.path.getmtime), "newest Trainer model (blessing not found in ML Metadata)"
    return blessed[-1], max(examples, key=os.path.getmtime), how


def _stand_in(work_dir: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """A MobileNetV3Small exported like the Trainer's, plus random train/eval images."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import tf_keras

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(64, 128, 128, 1)).astype(np.uint8)
    labels = rng.integers(0, 3, size=64)
    model = tf_keras.applications.MobileNetV3Small(
        input_shape=(128, 128, 1), weights=None, classes=3, include_preprocessing=True
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(train.astype(np.float32), labels, batch_size=16, epochs=1, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None, 128, 128, 1], tf.float32, name="image")])
    def serve_image(image):
        return {"probabilities": model(image, training=False)}

    export = os.path.join(work_dir, "standin", "Format-Serving")
    tf.saved_model.save(model, export, signatures={"serving_image": serve_image})
    eval_images = rng.integers(0, 256, size=(96, 128, 128, 1)).astype(np.uint8)
    return export, train, eval_images, np.arange(96) % 3


def _stock_rewrites(saved_model: str, work_dir: str) -> dict[str, bytes]:
    """TFX's TFLiteRewriter, default options and with Optimize.DEFAULT."""
    import tensorflow as tf
    from tfx.components.trainer.rewriting import rewriter, tflite_rewriter

    out = {}
    for label, optimizations in (("stock (no options)", None), ("stock Optimize.DEFAULT", [tf.lite.Optimize.DEFAULT])):
        dest = tempfile.mkdtemp(dir=work_dir)
        tflite_rewriter.TFLiteRewriter(
            name="tflite_rewriter", signature_key="serving_image", quantization_optimizations=optimizations
        ).perform_rewrite(
            rewriter.ModelDescription(rewriter.ModelType.SAVED_MODEL, saved_model),
            rewriter.ModelDescription(rewriter.ModelType.TFLITE_MODEL, dest),
        )
        with open(os.path.join(dest, "tflite"), "rb") as f:
            out[label] = f.read()
    return out


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def main(args: argparse.Namespace) -> str:
    """Run the benchmark; return the ``## tflite`` Markdown section."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shelf_data.contract import LABELS
    from shelf_tflite import build, convert, eval_data, runtime, variants, verify

    work_dir = os.path.join(getattr(args, "work_dir", "runs/bench"), "tflite")
    os.makedirs(work_dir, exist_ok=True)
    # Prefer the model that `make bench`'s own pipeline run just trained.
    demo = _find_demo(os.path.join(getattr(args, "work_dir", "runs/bench"), "pipeline")) or _find_demo(DEMO_HOME)
    if demo:
        saved_model, examples_uri, how = demo
        # Calibration photos as the pusher picks them: a uniform sample of the whole train split.
        representative = eval_data.sample_split(os.path.join(examples_uri, "Split-train"), 200)
        eval_images, eval_labels = eval_data.load_images(os.path.join(examples_uri, "Split-eval"))
        source = f"demo run: {how}: `{saved_model}`; eval split `{examples_uri}` ({len(eval_images)} images)"
    else:
        saved_model, train, eval_images, eval_labels = _stand_in(work_dir)
        representative = train[:200]
        source = (
            f"**stand-in**: no demo run under `{DEMO_HOME}`; MobileNetV3Small (weights=None, 1 epoch on random "
            f"images) and {len(eval_images)} random eval images. Size and latency are representative; "
            "agreement and recall are not"
        )
    reference = convert.saved_model_predict(saved_model, eval_images)
    sm_recall = verify.per_class_recall(eval_labels, reference)

    models = {v: build.convert(saved_model, v, representative_images=representative) for v in variants.VARIANTS}
    models.update(_stock_rewrites(saved_model, work_dir))
    rows = {}
    for name, data in models.items():
        out = runtime.run_tflite(data, eval_images)
        rows[name] = {
            "bytes": len(data),
            "ms1": runtime.measure_latency_ms(data, num_threads=1, repeats=100),
            "ms2": runtime.measure_latency_ms(data, num_threads=2, repeats=100),
            "agreement": float(np.mean(out.argmax(1) == reference.argmax(1))),
            "recall": verify.per_class_recall(eval_labels, out),
            "input": runtime.describe_io(data)["input"]["dtype"],
        }

    lines = [
        "## tflite",
        "",
        f"- model: {source}",
        "- SavedModel recall: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sm_recall.items()),
        "- latency: median of 100 batch-1 invocations after 5 warm-up runs, host CPU, "
        "LiteRT interpreter (ai-edge-litert, XNNPACK)",
        f"- goals: {GOALS}",
        "",
        "| model | input | bytes | ms @1 thread | ms @2 threads | agreement | "
        + " | ".join(f"recall {label}" for label in LABELS)
        + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(LABELS),
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['input']} | {row['bytes']:,} | {row['ms1']:.2f} | {row['ms2']:.2f} | "
            f"{row['agreement']:.3f} | " + " | ".join(_fmt(row["recall"][label]) for label in LABELS) + " |"
        )
    lines += ["", "Ratios against the stock rewriter (ours / stock):", ""]
    lines += ["| ours | stock | size ratio | latency ratio @1 thread |", "|---|---|---:|---:|"]
    for ours, stock in (
        ("fp32", "stock (no options)"),
        ("fp16", "stock (no options)"),
        ("int8", "stock (no options)"),
        ("dynamic", "stock Optimize.DEFAULT"),
        ("int8", "stock Optimize.DEFAULT"),
    ):
        a, b = rows[ours], rows[stock]
        lines.append(f"| {ours} | {stock} | {a['bytes'] / b['bytes']:.2f} | {a['ms1'] / b['ms1']:.2f} |")
    slow = [n for n, r in rows.items() if r["ms2"] > 2 * r["ms1"]]
    if slow:
        lines += ["", f"Slower at 2 threads than at 1 (more than 2x): {', '.join(slow)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(argparse.Namespace(work_dir="runs/bench")))
