"""The Kubeflow/Dataflow image: build time cold and cached, and its size.

Builds the image with ``make image`` on the project's own base (``make base-image``: Debian 12 from
debootstrap plus CPython 3.10, built first when absent), once cold (the BuildKit cache, uv's cache
mount included, pruned first, so every wheel is downloaded and pyfarmhash compiled) and once again
with nothing changed, then reads the size the engine reports (``docker image inspect -f
'{{.Size}}'``). Needs a Docker engine and the machine to itself; it prunes the engine's build cache.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from benchmarks.common import standalone

IMAGE = "shelf-audit-bench:latest"
GOAL_GB = 3.5


def _timed(*command: str) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _base_tag() -> str:
    return (
        subprocess.run(
            ["make", "-s", "--no-print-directory", "-p", "-n", "help"], capture_output=True, text=True, check=True
        )
        .stdout.split("BASE_IMAGE_TAG := ", 1)[1]
        .split()[0]
    )


def main(args: argparse.Namespace) -> str:
    base = _base_tag()
    had_base = subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode == 0
    base_s = _timed("make", "-s", "base-image")
    subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True)
    subprocess.run(["docker", "builder", "prune", "-af"], check=True, capture_output=True)
    build = ["make", "-s", "image", f"IMAGE={IMAGE}", f"BASE_IMAGE={base}"]
    cold_s = _timed(*build)
    cached_s = _timed(*build)
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", IMAGE], capture_output=True, text=True, check=True
        ).stdout
    )
    base_size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", base], capture_output=True, text=True, check=True
        ).stdout
    )
    listed = subprocess.run(["docker", "images", IMAGE], capture_output=True, text=True, check=True).stdout.strip()
    verdict = "within" if size / 1e9 <= GOAL_GB else "OVER"
    return "\n".join(
        [
            "## image",
            "",
            f"`make image IMAGE={IMAGE} BASE_IMAGE={base}` (`benchmarks/bench_image.py`), the base built by "
            "`make base-image` (debootstrap --variant=minbase bookworm + CPython 3.10 in /usr/local, `docker import`). "
            "Size: `docker image inspect -f '{{.Size}}' " + IMAGE + "` (uncompressed, base included).",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| size | {size:,} bytes ({size / 1e9:.2f} GB; goal ≤ {GOAL_GB} GB: {verdict}) |",
            f"| of which the base `{base}` | {base_size:,} bytes ({base_size / 1e6:.0f} MB) |",
            f"| `make base-image` | {'present, skipped' if had_base else 'built'}: {base_s:.0f} s |",
            f"| cold build (`docker builder prune -af` first: downloads, g++, the lock, export) | {cold_s:.0f} s |",
            f"| cached rebuild, nothing changed | {cached_s:.0f} s |",
            "",
            "```",
            f"$ docker images {IMAGE}",
            listed,
            "```",
            "",
        ]
    )


if __name__ == "__main__":
    standalone(main, __doc__.splitlines()[0])
