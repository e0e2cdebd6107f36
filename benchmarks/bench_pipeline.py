"""Pipeline benchmark: per-stage wall time of a demo run, Trainer throughput in TFX vs bare Keras, transformed size.

Runs ``shelf-audit run --config configs/demo.toml`` on the demo data into a
fresh home under the work dir (so no stage is cached), then the same command
with ``--force`` (stages up to the Trainer cached; the Evaluator now compares
against the first run's model as baseline), then, in this
process, fits the same model on the same transformed examples with the same
batch size through plain ``model.fit`` and compares train images/s (first
epoch left out of both: it fills the cache and traces the graph).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

DEMO_CONFIG = "configs/demo.toml"
DEMO_DATA = "data/demo"


def _steady(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 1 else values)


def _bare_keras_images_per_second(train_files: list[str], eval_files: list[str], config, epochs: int) -> float:
    import tf_keras

    from shelf_model import model as model_lib
    from shelf_model import trainer

    tf_keras.utils.set_random_seed(config.seed)
    ds = trainer.make_dataset(train_files, config.batch_size, config.image_size, True, config.seed)
    model = model_lib.build_model(config.image_size, "none", config.dropout, config.batchnorm_momentum)
    model.compile(tf_keras.optimizers.Adam(config.learning_rate), "sparse_categorical_crossentropy")
    throughput = trainer.Throughput(config.batch_size)
    model.fit(ds, epochs=epochs, callbacks=[throughput], verbose=0)
    return _steady([e["images_per_second"] for e in throughput.epochs])


def _transformed_bytes(examples_dir: str) -> tuple[float, float, int, str]:
    import tensorflow as tf

    from shelf_model.features import compression_type

    files = sorted(f for f in glob.glob(os.path.join(examples_dir, "Split-*", "*")) if os.path.isfile(f))
    compression = compression_type(files)
    sizes = [len(r) for r in tf.data.TFRecordDataset(files, compression_type=compression).as_numpy_iterator()]
    on_disk = sum(os.path.getsize(f) for f in files)
    return statistics.mean(sizes), on_disk / len(sizes), len(sizes), compression or "plain"


def _run(cmd: list[str]) -> tuple[float, float]:
    """Run one pipeline command; its wall seconds and the load average before it."""
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"demo run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return time.monotonic() - started, load


def _overhead_rows(first, again, wall: float, trainer: float) -> list[str]:
    """Table rows: the run's wall time without the Trainer, and the Evaluator against the Trainer."""
    stages = sum(s.seconds for s in first.stages)
    evaluator = first.stage("Evaluator")
    with_baseline = again.stage("Evaluator")
    rows = [
        f"| `shelf-audit run` wall time (process start to exit) | {wall:.1f} s |",
        f"| overhead: wall time minus Trainer | {wall - trainer:.1f} s |",
        f"| overhead: sum of stages minus Trainer | {stages - trainer:.1f} s |",
        f"| outside any stage (start-up: imports, bucket probe, digest; end: summary, report) "
        f"| {wall - stages:.1f} s |",
    ]
    if evaluator:
        ratio = evaluator.seconds / trainer
        rows.append(f"| Evaluator / Trainer, no baseline ({evaluator.seconds:.1f} s) | {ratio:.3f} |")
    if with_baseline and with_baseline.state == "COMPLETE":
        rows.append(
            f"| Evaluator / Trainer, with a baseline (re-run, {with_baseline.seconds:.1f} s) "
            f"| {with_baseline.seconds / trainer:.3f} |"
        )
    return rows


def main(args: argparse.Namespace) -> str:
    """Run the demo pipeline fresh and return the ``## pipeline`` section."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx import v1 as tfx

    from pipeline import config as config_lib
    from pipeline import run_summary
    from pipeline.pipeline import gate_eval_config

    home = os.path.join(args.work_dir, "pipeline")
    shutil.rmtree(home, ignore_errors=True)
    if not glob.glob(os.path.join(DEMO_DATA, "span-*", "*.tfrecord.gz")):
        raise SystemExit(f"no demo data in {DEMO_DATA}: run `make demo-data` first")
    cmd = [sys.executable, "-m", "shelf_audit.cli", "run", "--config", DEMO_CONFIG, "--data", DEMO_DATA, "--home", home]
    config = config_lib.load(DEMO_CONFIG)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(os.path.join(home, "metadata.sqlite"))
    wall, load = _run(cmd)
    summary = run_summary.summarize(connection, config.name, gate_eval_config(config.gate))
    # The same command again with --force: every stage up to the Trainer is cached, and the Evaluator
    # now has a baseline (the model the first run published), so it evaluates two models.
    _, load_again = _run([*cmd, "--force"])
    again = run_summary.summarize(connection, config.name, gate_eval_config(config.gate))

    trainer_stage = summary.stage("Trainer")
    model_run = glob.glob(os.path.join(home, "pipeline_root", "Trainer", "model_run", "*", "training_summary.json"))
    history = json.load(open(model_run[0]))["history"]
    tfx_ips = _steady(history["images_per_second"])
    transformed = glob.glob(os.path.join(home, "pipeline_root", "Transform", "transformed_examples", "*"))[0]
    train_files = [os.path.join(transformed, "Split-train", "*")]
    eval_files = [os.path.join(transformed, "Split-eval", "*")]
    epochs = min(4, max(2, len(history["images_per_second"])))
    bare_ips = _bare_keras_images_per_second(train_files, eval_files, config.training, epochs)
    mean_bytes, disk_bytes, count, compression = _transformed_bytes(transformed)
    raw_files = glob.glob(os.path.join(DEMO_DATA, "span-*", "*.tfrecord.gz"))
    raw_disk = sum(os.path.getsize(f) for f in raw_files) / max(count, 1)

    recall = next((r.value for r in summary.gate if r.metric == "weighted_macro_recall"), float("nan"))
    overhead = _overhead_rows(summary, again, wall, trainer_stage.seconds)
    lines = [
        "## pipeline",
        "",
        f"Demo run `{' '.join(cmd[1:])}` (fresh home, nothing cached); verdict "
        f"{'blessed' if summary.blessed else 'NOT blessed'}, class-weighted recall {recall:.4f}.",
        "",
        "| stage | state | seconds |",
        "|---|---|---:|",
    ]
    lines += [f"| {s.node_id} | {s.state} | {s.seconds:.1f} |" for s in summary.stages]
    lines += [f"| **total** | | **{sum(s.seconds for s in summary.stages):.1f}** |", ""]
    lines += [
        f"Load average before the runs: {load:.2f} and {load_again:.2f} (2 cores; above ~0.5 the machine was shared).",
        "",
        "| overhead and Evaluator ratios (goals: overhead <= 60 s, Evaluator <= 0.1x Trainer) | value |",
        "|---|---:|",
        *overhead,
        "",
    ]
    lines += [
        "| Trainer throughput (train images/s, median of epochs 2+) | value |",
        "|---|---:|",
        f"| inside TFX (Trainer, {len(history['images_per_second'])} epochs, batch {config.training.batch_size}) "
        f"| {tfx_ips:.0f} |",
        f"| bare Keras `fit`, same model, data and batch ({epochs} epochs, this process) | {bare_ips:.0f} |",
        f"| ratio TFX / bare (goal >= 0.9) | {tfx_ips / bare_ips:.2f} |",
        "",
        f"Trainer stage wall time {trainer_stage.seconds:.0f} s (includes model build, evaluation each epoch, export).",
        "",
        "| transformed examples | bytes |",
        "|---|---:|",
        f"| serialized tf.Example, mean over {count} | {mean_bytes:,.0f} |",
        f"| on disk ({compression} TFRecords) per example | {disk_bytes:,.0f} |",
        f"| raw input on disk (GZIP JPEG/PNG) per example | {raw_disk:,.0f} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(argparse.Namespace(work_dir="runs/bench")))
