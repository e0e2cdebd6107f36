"""Trainer benchmark: train images/s against the CPU's FP32 limit, and trials of batch size, XLA and threads.

    python -m benchmarks.run --only pipeline   # once: makes the demo's transformed examples
    python -m benchmarks.run --only trainer

``SHELF_AUDIT_BENCH_TRAINER_EXAMPLES=<transformed_examples dir>`` reads other examples;
``SHELF_AUDIT_BENCH_TRAINER_EPOCHS=N`` changes the epoch count.
See docs/performance.md#benchmarks-how-the-figures-are-made for how the limit and the trials are measured.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from shelf_model.hparams import TrainingConfig

EPOCHS = 3
SEED = 42
# The Trainer's defaults (training.* in the config), so the trials train what a run trains.
_DEFAULTS = TrainingConfig()
IMAGE_SIZE = _DEFAULTS.image_size
LEARNING_RATE = _DEFAULTS.learning_rate
DROPOUT = _DEFAULTS.dropout
BATCHNORM_MOMENTUM = _DEFAULTS.batchnorm_momentum
CLASS_WEIGHTS = dict(_DEFAULTS.class_weights)
TRIAL_TIMEOUT_SECONDS = 3600
EXAMPLES_ENV = "SHELF_AUDIT_BENCH_TRAINER_EXAMPLES"
EPOCHS_ENV = "SHELF_AUDIT_BENCH_TRAINER_EPOCHS"
# A trial is kept when it is this much faster than the baseline and loses at most RECALL_TOLERANCE.
KEEP_SPEEDUP = 1.2
SLOWER_SPEEDUP = 0.95
RECALL_TOLERANCE = 0.01

# intra/inter None: TensorFlow's default (one intra-op thread per core).
TRIALS: list[dict[str, Any]] = [
    {"name": "baseline", "batch": 32, "xla": False, "intra": None, "inter": None},
    # XLA trains at ~10 images/s on this CPU (smoke run): capped at a few steps per epoch, so its
    # throughput is measured but not its recall (it is not trained to the same point).
    {"name": "XLA", "batch": 32, "xla": True, "intra": None, "inter": None, "steps": 25},
    {"name": "batch 64", "batch": 64, "xla": False, "intra": None, "inter": None},
    {"name": "batch 128", "batch": 128, "xla": False, "intra": None, "inter": None},
    {"name": "intra 2 / inter 1", "batch": 32, "xla": False, "intra": 2, "inter": 1},
    {"name": "one thread (intra 1 / inter 1)", "batch": 32, "xla": False, "intra": 1, "inter": 1},
    {"name": "XLA + batch 64", "batch": 64, "xla": True, "intra": None, "inter": None, "steps": 15},
]


def _steady(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 1 else values)


# --- The CPU's limit ---------------------------------------------------------------


def _layer_macs(layer: Any) -> int:
    """Multiply-adds of one forward pass of one Conv2D, DepthwiseConv2D or Dense layer (batch 1); else 0."""
    import tf_keras

    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):  # a Conv2D subclass: test it first
        _, out_h, out_w, _ = layer.output_shape
        k_h, k_w = layer.kernel_size
        in_c = layer.input_shape[-1]
        return out_h * out_w * k_h * k_w * in_c * layer.depth_multiplier
    if isinstance(layer, tf_keras.layers.Conv2D):
        _, out_h, out_w, out_c = layer.output_shape
        k_h, k_w = layer.kernel_size
        in_c = layer.input_shape[-1]
        return out_h * out_w * k_h * k_w * (in_c // layer.groups) * out_c
    if isinstance(layer, tf_keras.layers.Dense):
        return int(layer.input_shape[-1]) * layer.units
    return 0


def forward_macs(model: Any) -> tuple[int, dict[str, int]]:
    """Multiply-adds of one image's forward pass, walking nested models; also the total per layer type."""
    import tf_keras

    by_type: dict[str, int] = {}

    def walk(m: Any) -> int:
        total = 0
        for layer in m.layers:
            if isinstance(layer, tf_keras.Model):
                total += walk(layer)
                continue
            macs = _layer_macs(layer)
            if macs:
                by_type[type(layer).__name__] = by_type.get(type(layer).__name__, 0) + macs
            total += macs
        return total

    return walk(model), by_type


def profiler_flops(model: Any, image_size: int) -> int | None:
    """Float ops of one image's forward pass by the TF profiler (all ops it knows), or None if it fails."""
    try:
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False))
        graph = fn.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 1], tf.float32)).graph
        options = tf.compat.v1.profiler.ProfileOptionBuilder(
            tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        ).with_empty_output()
        return int(tf.compat.v1.profiler.profile(graph=graph, options=options.build()).total_float_ops)
    except Exception:  # noqa: BLE001 - optional cross-check only.
        return None


def cpu_peak() -> tuple[float, str]:
    """Peak FP32 FLOP/s of this CPU from /proc/cpuinfo, and the assumption behind it."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cores = os.cpu_count() or 1
    mhz = float(info.get("cpu MHz", "0") or 0)
    flags = set(info.get("flags", "").split())
    vendor = info.get("vendor_id", "unknown")
    model_name = info.get("model name", "unknown CPU")
    if "avx512f" in flags and vendor == "AuthenticAMD":
        per_cycle, why = 32, "AMD avx512f (Zen 4: 512-bit ops on two 256-bit FMA pipes) = 32 FP32 FLOP/cycle/core"
    elif "avx512f" in flags:
        per_cycle, why = 64, "Intel avx512f (two 512-bit FMA units, server parts) = 64 FP32 FLOP/cycle/core"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "avx2 + fma (two 256-bit FMA units) = 32 FP32 FLOP/cycle/core"
    else:
        per_cycle, why = 8, "no avx2/fma: 8 FP32 FLOP/cycle/core assumed"
    peak = cores * mhz * 1e6 * per_cycle
    return peak, f"{model_name}: {cores} cores x {mhz / 1000:.2f} GHz (`cpu MHz`) x {why}"


# --- Trials (each in its own subprocess) ---------------------------------------------


def _examples_dir(work_dir: str) -> str:
    override = os.environ.get(EXAMPLES_ENV)
    if override:
        if not glob.glob(os.path.join(override, "Split-train", "*")):
            raise SystemExit(f"{EXAMPLES_ENV}={override} has no Split-train/* files")
        return override
    pattern = os.path.join(work_dir, "pipeline", "pipeline_root", "Transform", "transformed_examples", "*")
    found = [d for d in glob.glob(pattern) if glob.glob(os.path.join(d, "Split-train", "*"))]
    if not found:
        raise SystemExit(
            f"no transformed examples under {os.path.dirname(pattern)}: "
            f"run `python -m benchmarks.run --only pipeline` first (or set {EXAMPLES_ENV})"
        )
    return max(found, key=os.path.getmtime)


def _set_threads(trial: dict[str, Any]) -> dict[str, int]:
    """Make TF use the trial's thread counts before any op runs; return what TF reports before and after."""
    import tensorflow as tf

    threading = tf.config.threading
    seen = {
        "intra_reported_at_start": threading.get_intra_op_parallelism_threads(),
        "inter_reported_at_start": threading.get_inter_op_parallelism_threads(),
    }
    # The parent sets TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, which size TF's pools, but tf.config
    # reports 0 for them (only values set through it): set the same counts through it, before any op runs.
    if trial.get("intra"):
        threading.set_intra_op_parallelism_threads(int(trial["intra"]))
    if trial.get("inter"):
        threading.set_inter_op_parallelism_threads(int(trial["inter"]))
    seen["intra"] = threading.get_intra_op_parallelism_threads()
    seen["inter"] = threading.get_inter_op_parallelism_threads()
    return seen


def run_trial(trial: dict[str, Any]) -> dict[str, Any]:
    """Fit and evaluate one trial in this process (the ``--trial`` child); return its figures."""
    start = time.perf_counter()
    threads = _set_threads(trial)
    import numpy as np
    import tf_keras

    from pipeline.metrics import recall_from_matrix
    from shelf_data.contract import LABELS
    from shelf_model import model as model_lib
    from shelf_model import trainer

    batch = int(trial["batch"])
    tf_keras.utils.set_random_seed(SEED)
    steps = trial.get("steps")
    train_ds = trainer.make_dataset(trial["train_files"], batch, IMAGE_SIZE, True, SEED, repeat=steps is not None)
    eval_ds = trainer.make_dataset(trial["eval_files"], batch, IMAGE_SIZE, False)
    model = model_lib.build_model(IMAGE_SIZE, "none", DROPOUT, BATCHNORM_MOMENTUM)
    trainer._compile(model, LEARNING_RATE, jit_compile=bool(trial["xla"]))
    throughput = trainer.Throughput(batch)
    model.fit(
        train_ds,
        epochs=int(trial["epochs"]),
        steps_per_epoch=steps,
        callbacks=[throughput],
        class_weight=trainer.class_weight_by_id(CLASS_WEIGHTS),
        verbose=0,
    )
    per_epoch = [e["images_per_second"] for e in throughput.epochs]
    labels = np.concatenate([y.numpy() for _, y in eval_ds])
    predicted = model.predict(eval_ds, verbose=0).argmax(axis=1)
    entries: dict[tuple[int, int], float] = {}
    for actual, guess in zip(labels.tolist(), predicted.tolist(), strict=True):
        entries[(actual, guess)] = entries.get((actual, guess), 0.0) + 1.0
    return {
        "images_per_second": _steady(per_epoch),
        "per_epoch": per_epoch,
        "recall": {label: recall_from_matrix(entries, {i: 1.0}) for i, label in enumerate(LABELS)},
        "weighted_recall": recall_from_matrix(entries, trainer.class_weight_by_id(CLASS_WEIGHTS)),
        "capped_steps": steps,
        "eval_images": int(labels.size),
        "seconds": time.perf_counter() - start,
        "threads": threads,
    }


def _child_main(payload: str) -> int:
    trial = json.loads(payload)
    try:
        result = run_trial(trial)
    except Exception as e:  # noqa: BLE001 - the parent reports the error as the trial's row.
        lines = str(e).strip().splitlines()
        print(json.dumps({"error": f"{type(e).__name__}: {lines[0] if lines else ''}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def _spawn(trial: dict[str, Any]) -> dict[str, Any]:
    """Run one trial in a fresh Python; a crash comes back as ``{"error": first line}``."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    for key, name in (("intra", "TF_NUM_INTRAOP_THREADS"), ("inter", "TF_NUM_INTEROP_THREADS")):
        env.pop(name, None)
        if trial.get(key):
            env[name] = str(trial[key])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "benchmarks.bench_trainer", "--trial", json.dumps(trial)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=TRIAL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TRIAL_TIMEOUT_SECONDS} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    tail = [line for line in proc.stderr.splitlines() if line.strip()]
    return {"error": f"exit code {proc.returncode}: {tail[-1].strip() if tail else 'no output'}"}


# --- Report ---------------------------------------------------------------------


def _verdict(speedup: float, recall_drop: float) -> str:
    if recall_drop > RECALL_TOLERANCE:
        return "lower recall"
    if speedup >= KEEP_SPEEDUP:
        return "keep"
    return "slower" if speedup < SLOWER_SPEEDUP else "no gain"


def _threads_text(trial: dict[str, Any], result: dict[str, Any]) -> str:
    asked = f"{trial['intra'] or 'default'}/{trial['inter'] or 'default'}"
    threads = result.get("threads")
    if not threads:
        return asked
    return f"{asked} (TF: {threads['intra']}/{threads['inter']})"


def _fmt(value: float, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def main(args: argparse.Namespace) -> str:
    """Measure the CPU's limit and run the trials; return the ``## trainer`` section."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    examples = _examples_dir(args.work_dir)
    epochs = int(os.environ.get(EPOCHS_ENV, EPOCHS))
    train_files = [os.path.join(examples, "Split-train", "*")]
    eval_files = [os.path.join(examples, "Split-eval", "*")]

    from shelf_model import model as model_lib

    model = model_lib.build_model(IMAGE_SIZE, "none", DROPOUT, BATCHNORM_MOMENTUM)
    macs, by_type = forward_macs(model)
    profiled = profiler_flops(model, IMAGE_SIZE)
    del model
    train_flops = 3 * 2 * macs
    peak, assumption = cpu_peak()
    ceiling = peak / train_flops if train_flops else math.nan

    load = os.getloadavg()
    results = []
    for trial in TRIALS:
        spec = dict(trial, epochs=epochs, train_files=train_files, eval_files=eval_files)
        print(f">> trainer trial {trial['name']}", flush=True)
        results.append(_spawn(spec))

    base = results[0]
    base_ips = base.get("images_per_second", math.nan)
    base_recall = base.get("weighted_recall", math.nan)
    lines = [
        "## trainer",
        "",
        f"Transformed examples `{examples}`; model `build_model({IMAGE_SIZE}, 'none', {DROPOUT}, "
        f"{BATCHNORM_MOMENTUM})` from scratch, Adam {LEARNING_RATE}, class weights {CLASS_WEIGHTS}, "
        f"{epochs} epochs, seed {SEED}, one subprocess per trial. Images/s: train batches only, median of "
        "epochs 2+. Recall: argmax on the eval split after the last epoch.",
        "",
        f"Load average before the trials (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on "
        f"{os.cpu_count()} cores; the machine is shared, so timings are off by whatever else ran.",
        "",
        "### The CPU's limit",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| multiply-adds, one forward pass at {IMAGE_SIZE}x{IMAGE_SIZE}x1 (counted) | {macs:,} |",
    ]
    lines += [f"| of which {name} | {value:,} |" for name, value in sorted(by_type.items())]
    if profiled is not None:
        lines.append(
            f"| TF profiler float ops, one forward pass (all ops it knows) | {profiled:,} "
            f"(= {profiled / (2 * macs):.2f} x 2 x counted MACs: it also counts element-wise ops) |"
        )
    else:
        lines.append("| TF profiler float ops, one forward pass | n/a (profiler failed) |")
    lines += [
        f"| FLOPs per training image (3 x forward MACs x 2) | {train_flops:,} |",
        f"| peak FP32 GFLOP/s ({assumption}) | {peak / 1e9:.0f} |",
        f"| ceiling, train images/s (peak / FLOPs per image) | {ceiling:,.0f} |",
        f"| baseline, train images/s measured | {_fmt(base_ips, '.0f')} |",
        f"| baseline, % of ceiling | {_fmt(100 * base_ips / ceiling, '.1f')} % |",
        "",
        "Counted: Conv2D `out_h*out_w*k_h*k_w*(in_c/groups)*out_c`, DepthwiseConv2D "
        "`out_h*out_w*k_h*k_w*in_c*depth_multiplier`, Dense `in*out`, recursively through the backbone; "
        "BatchNorm, activations, pooling, rescaling and the squeeze-excite multiplies are ignored. "
        "A training step is taken as 3 forward passes (forward, gradient w.r.t. activations and w.r.t. weights).",
        "",
        "### Trials",
        "",
        "| trial | batch | XLA | intra/inter threads | images/s | speed-up vs baseline "
        f"| weighted recall after {epochs} epochs | recall damaged | verdict |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for i, (trial, result) in enumerate(zip(TRIALS, results, strict=True)):
        head = f"| {trial['name']} | {trial['batch']} | {'on' if trial['xla'] else 'off'} | "
        if "error" in result:
            lines.append(head + f"{_threads_text(trial, result)} | error | | | | {result['error'][:200]} |")
            continue
        ips, recall = result["images_per_second"], result["weighted_recall"]
        speedup = ips / base_ips if base_ips else math.nan
        if result.get("capped_steps"):
            # Too slow to train as far as the others: throughput only.
            verdict = _verdict(speedup, 0.0) + f" ({result['capped_steps']} steps per epoch; recall not compared)"
            recall_cells = "n/a | n/a"
        else:
            verdict = "baseline" if i == 0 else _verdict(speedup, base_recall - recall)
            recall_cells = f"{_fmt(recall)} | {_fmt(result['recall']['damaged'])}"
        lines.append(
            head + f"{_threads_text(trial, result)} | {ips:.0f} | {_fmt(speedup, '.2f')} | {recall_cells} | {verdict} |"
        )
    lines += [
        "",
        f"Verdict: keep = speed-up >= {KEEP_SPEEDUP} and weighted recall at most {RECALL_TOLERANCE} below the "
        f"baseline's; lower recall = more than {RECALL_TOLERANCE} below; slower = speed-up < {SLOWER_SPEEDUP}; "
        "else no gain. Threads: asked (default = TensorFlow's choice, 0) and what "
        "`tf.config.threading` reported in the child after the thread env vars and setters.",
        "",
        "| trial | images/s per epoch | seconds (whole child) | TF threads at start (intra/inter) |",
        "|---|---|---:|---|",
    ]
    for trial, result in zip(TRIALS, results, strict=True):
        if "error" in result:
            continue
        epochs_text = ", ".join(f"{v:.0f}" for v in result["per_epoch"])
        t = result["threads"]
        lines.append(
            f"| {trial['name']} | {epochs_text} | {result['seconds']:.0f} "
            f"| {t['intra_reported_at_start']}/{t['inter_reported_at_start']} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--trial":
        sys.exit(_child_main(sys.argv[2]))
    print(main(argparse.Namespace(work_dir="runs/bench")))
