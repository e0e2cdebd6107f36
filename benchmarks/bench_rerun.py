"""Re-run benchmark: an unchanged re-run with ``--force`` (the whole pipeline) and without it (the inputs digest check).

Publishes a version from 1,800 synthetic photos, then measures two re-runs on the same data, config and
home: ``--force`` (the pipeline runs, the Evaluator and the Pusher publish nothing) and the same command
without it (``nothing new since <version>``).

``python -m benchmarks.run --only rerun`` (or ``python -m benchmarks.bench_rerun``).
See docs/performance.md#benchmarks-how-the-figures-are-made for how each figure is measured.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time

from benchmarks.common import contention_note, standalone

COUNT, SEED, EPOCHS = 1800, 7, 3
# The demo config with the gate relaxed: the benchmark needs the first run to publish a
# version whatever 3 epochs on 1,800 photos reach; the figures measured are the re-runs.
CONFIG = """
name = "shelf-audit-bench-rerun"
beam_args = []
[training]
weights = "none"
epochs = 15
batch_size = 32
[gate]
weighted_recall_floor = 0.0
[gate.class_recall_floors]
damaged = 0.0
"""
_TIME = "/usr/bin/time"


def _measure(cmd: list[str], log_path: str) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (MB), exit status, stdout and the load average before it."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    load = os.getloadavg()[0]
    use_time = os.access(_TIME, os.X_OK)
    full = [_TIME, "-v", *cmd] if use_time else cmd
    started = time.monotonic()
    proc = subprocess.run(full, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    with open(log_path, "w") as f:
        f.write(f"$ {shlex.join(full)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if use_time:
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
        source = "/usr/bin/time -v"
    else:
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        source = "getrusage(RUSAGE_CHILDREN) (peak of all children so far)"
    return {
        "cmd": cmd,
        "status": proc.returncode,
        "wall": wall,
        "rss_mb": rss_kb / 1024,
        "rss_source": source,
        "load": load,
        "stdout": proc.stdout,
        "log": log_path,
    }


def _stages(stdout: str) -> str:
    """The stage table of a run summary, as ``name STATE seconds`` pairs, for the report."""
    rows = re.findall(r"^  (\S+)\s+(COMPLETE|CACHED|FAILED|RUNNING|NEW|CANCELED)\s+([\d.]+)$", stdout, re.M)
    return ", ".join(f"{name} {state.lower()} {float(seconds):.0f}s" for name, state, seconds in rows)


def main(args: argparse.Namespace) -> str:
    """Make the data, publish once, measure a forced and an unforced re-run; return the ``## rerun`` section."""
    work = os.path.join(args.work_dir, "rerun")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data, home, config = os.path.join(work, "data"), os.path.join(work, "home"), os.path.join(work, "rerun.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    cli = [sys.executable, "-m", "shelf_audit.cli"]
    synth = [*cli, "synth", "--out", data, "--span", "1", "--count", str(COUNT), "--seed", str(SEED)]
    subprocess.run(synth, check=True, capture_output=True)
    run = [*cli, "run", "--config", config, "--data", data, "--home", home, "--epochs", str(EPOCHS)]

    first = _measure(run, os.path.join(work, "first.log"))
    if first["status"] != 0:
        raise SystemExit(f"the first run did not publish (exit {first['status']}); see {first['log']}")
    before = _measure([*run, "--force"], os.path.join(work, "before.log"))
    after = _measure(run, os.path.join(work, "after.log"))
    if before["status"] != 0 or after["status"] != 0 or "nothing new since" not in after["stdout"]:
        raise SystemExit(f"unexpected re-run outcome; see {before['log']} and {after['log']}")
    said = after["stdout"].strip().splitlines()[-1]

    def row(name: str, m: dict, what: str) -> str:
        command = shlex.join(["shelf-audit", *m["cmd"][len(cli) :]])
        return f"| {name} | `{command}` | {m['wall']:.1f} | {m['rss_mb']:,.0f} | {m['load']:.1f} | {what} |"

    lines = [
        "## rerun",
        "",
        f"Measured {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} "
        f"with `python -m benchmarks.bench_rerun` ({os.cpu_count()} cores).",
        "",
        f"An unchanged re-run, before and after the inputs digest check, on {COUNT:,} synthetic photos "
        f"(`shelf-audit synth --out DATA --span 1 --count {COUNT} --seed {SEED}`), "
        f"{EPOCHS} epochs (`--epochs {EPOCHS}`), the demo model with the gate relaxed so that the first run publishes "
        f"(`benchmarks/bench_rerun.py`). Wall time and peak RSS from {after['rss_source']}.",
        "",
        "| run | command | wall s | peak RSS MB | load avg before | what it did |",
        "|---|---|---:|---:|---:|---|",
        row("first (publishes)", first, _stages(first["stdout"]) or "-"),
        row("before: re-run, `--force`", before, _stages(before["stdout"]) or "-"),
        row("after: re-run", after, f"`{said}`"),
        "",
        f"Unchanged re-run: {before['wall']:.0f} s -> {after['wall']:.0f} s wall "
        f"({before['wall'] / after['wall']:.1f}x), peak RSS {before['rss_mb']:,.0f} MB -> {after['rss_mb']:,.0f} MB. "
        "The remaining time is Python importing TFX, TensorFlow and the pipeline module "
        "(`pipeline/pipeline.py`) to compute the digest.",
    ]
    lines += contention_note([first["load"], before["load"], after["load"]])
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    standalone(main, __doc__.splitlines()[0])
