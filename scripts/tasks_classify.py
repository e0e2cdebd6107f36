"""Classify photos with the ``tasks`` TFLite variant through MediaPipe Tasks' ImageClassifier.

What the Android app does, on a desktop: use it to check a model from the bucket before shipping it to
the app, or to see what MediaPipe reads from it. Runs in the MediaPipe environment::

    make env-mediapipe
    .venv-mediapipe/bin/python scripts/tasks_classify.py MODEL.tflite IMAGE [IMAGE...]
    .venv-mediapipe/bin/python scripts/tasks_classify.py --metadata MODEL.tflite

Prints one JSON object per line. Exit status: 0 on success, 2 for bad arguments, 1 when MediaPipe refuses
the model or an image. See docs/bucket-contract.md#the-tasks-variant-and-its-metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from typing import Any


def read_model_metadata(model_path: str) -> dict[str, Any]:
    """The metadata MediaPipe's own metadata reader finds in the model, and its label file."""
    # compatibility shim: docs/design-decisions.md#compatibility-shims
    try:
        from mediapipe.tasks.python.metadata import metadata as mp_metadata
    except ImportError:  # older/newer MediaPipe without the Python metadata module
        mp_metadata = None
    if mp_metadata is not None:
        displayer = mp_metadata.MetadataDisplayer.with_model_file(model_path)
        metadata = json.loads(displayer.get_metadata_json())
        files = sorted(displayer.get_packed_associated_file_list())

        def read(name: str) -> bytes:
            return displayer.get_associated_file_buffer(name)
    else:
        metadata = {}
        with zipfile.ZipFile(model_path) as archive:
            files = sorted(archive.namelist())
            buffers = {name: archive.read(name) for name in files}

        def read(name: str) -> bytes:
            return buffers[name]

    labels: list[str] = []
    for subgraph in metadata.get("subgraph_metadata", []):
        for tensor in subgraph.get("output_tensor_metadata", []):
            for associated in tensor.get("associated_files", []):
                if associated.get("type") == "TENSOR_AXIS_LABELS" and associated.get("name") in files:
                    labels = [line for line in read(associated["name"]).decode("utf-8").splitlines() if line.strip()]
    return {"file": model_path, "metadata": metadata, "associated_files": files, "labels": labels}


def classify(model_path: str, image_paths: list[str]) -> list[dict[str, Any]]:
    """Scores of every class for each image, as MediaPipe's ImageClassifier returns them."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=model_path),
        running_mode=vision.RunningMode.IMAGE,
        max_results=-1,  # every class, not only the top ones
    )
    results = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in image_paths:
            image = mp.Image.create_from_file(path)
            result = classifier.classify(image)
            categories = result.classifications[0].categories
            scores = {c.category_name: float(c.score) for c in categories}
            top = max(categories, key=lambda c: c.score)
            results.append(
                {
                    "file": path,
                    "width": image.width,
                    "height": image.height,
                    "scores": scores,
                    "top": {"category": top.category_name, "index": int(top.index), "score": float(top.score)},
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the tasks variant .tflite (with metadata)")
    parser.add_argument("images", nargs="*", help="JPEG or PNG photos (any size: MediaPipe resizes them)")
    parser.add_argument("--metadata", action="store_true", help="print what MediaPipe reads from the model first")
    args = parser.parse_args(argv)
    if not args.images and not args.metadata:
        parser.error("give at least one IMAGE, or --metadata")
    try:
        if args.metadata:
            print(json.dumps(read_model_metadata(args.model)), flush=True)
        for line in classify(args.model, args.images) if args.images else []:
            print(json.dumps(line), flush=True)
    except (RuntimeError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
