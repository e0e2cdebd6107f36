"""Run the benchmarks and write their figures to a Markdown results file.

Each ``benchmarks/bench_*.py`` module exposes ``main(args) -> str`` that
returns a Markdown section. ``python -m benchmarks.run --only synth`` runs
one; the results file records the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import pkgutil
import platform
import shlex
import sys
import warnings

import benchmarks


def _available() -> list[str]:
    return sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )


def _stamped(section: str, stamp: str) -> str:
    """``section`` with ``stamp`` as its first line after the heading (kept when a later run skips it)."""
    heading, _, body = section.partition("\n")
    return f"{heading}\n\n{stamp}\n{body}"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks and write ``--out``."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results.md")
    parser.add_argument("--only", action="append", choices=_available(), help="run only these (repeatable)")
    parser.add_argument("--work-dir", default="runs/bench", help="scratch folder for benchmark data and runs")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
    os.makedirs(args.work_dir, exist_ok=True)
    names = args.only or _available()
    sections = []
    command = shlex.join(["python", "-m", "benchmarks.run", *argv])
    for name in names:
        print(f">> benchmark {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        section = _stamped(module.main(args), f"_Measured {started} by `{command}`._")
        print(section, flush=True)
        sections.append(section)
    header = [
        "# Benchmark results",
        "",
        f"- command: `{command}` (via `make bench`); each section names the run that measured it",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
    ]
    previous = {}
    if args.only and os.path.exists(args.out):
        # Keep the sections of benchmarks not re-run this time.
        with open(args.out) as f:
            text = f.read()
        for chunk in text.split("\n## ")[1:]:
            previous[chunk.split("\n", 1)[0].strip()] = "## " + chunk.rstrip() + "\n"
    for section in sections:
        previous.pop(section.split("\n", 1)[0].lstrip("# ").strip(), None)
    with open(args.out, "w") as f:
        f.write("\n".join(header) + "\n" + "\n".join(sections + list(previous.values())))
    print(f">> wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
