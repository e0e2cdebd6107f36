"""Small pieces the benchmark modules share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable


def contention_note(loads: Iterable[float], cores_busy: float = 1.0) -> list[str]:
    """A line saying the figures include other work, when any run started above ``cores_busy`` load."""
    if max(loads, default=0.0) <= cores_busy:
        return []
    return [
        "The load average before a run includes the tail of this benchmark's previous run; above 1 on 2 cores "
        "the machine may also have been shared with other jobs, and the figures include their contention."
    ]


def standalone(main: Callable[[argparse.Namespace], str], description: str) -> None:
    """Run one benchmark module on its own (``python -m benchmarks.bench_x [--work-dir D]``) and print its section."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work-dir", default="runs/bench")
    print(main(parser.parse_args(sys.argv[1:])))
