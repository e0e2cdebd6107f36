"""The curated schema of the shelf photo records (``schema.pbtxt``), shipped inside the package.

A wheel or an image has it, no checkout needed: :data:`SCHEMA_PATH` is the
installed file. The pipeline names it as ``package://schemas/schema.pbtxt``
with its digest, so a compiled Kubeflow spec carries no path of the compiling
machine.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_FILE = "schema.pbtxt"
SCHEMA_PATH = Path(__file__).resolve().parent / SCHEMA_FILE
