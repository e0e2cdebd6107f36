"""``shelf-audit compile``: write the KFP V2 pipeline spec for Kubeflow Pipelines or Vertex AI Pipelines.

The output (YAML, or JSON when the name ends in ``.json``) is the pipeline
package itself: ``kfp.Client().upload_pipeline(path)``,
``create_run_from_pipeline_package(path, arguments=...)`` and Vertex
``PipelineJob(template_path=path, parameter_values=...)`` take it as it is.
Runtime parameters: ``input_base``, ``range_config``, ``bucket``, ``epochs``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline import config as config_lib
from shelf_audit.exit_codes import EXIT_ERROR, EXIT_OK

log = logging.getLogger("shelf_audit.compile")

DEFAULT_CONFIG = "configs/production.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``shelf-audit compile``."""
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"TOML config (default {DEFAULT_CONFIG})")
    parser.add_argument(
        "--pipeline-root", required=True, help="where the cluster writes artifacts, e.g. gs://BUCKET/pipelines"
    )
    parser.add_argument("--out", default="pipeline.yaml", help="spec file to write: .yaml (default) or .json")
    parser.add_argument("--image", help="container image for every task (default: kubeflow.image in the config)")
    parser.add_argument(
        "--backend",
        choices=("vertex", "kfp"),
        default="vertex",
        help="vertex: Vertex AI Pipelines, the whole DAG (default); kfp: open-source Kubeflow Pipelines 2.x, "
        "which cannot run TFX resolver tasks, so the gate has no no-drop check against the last blessed model",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``shelf-audit compile``."""
    try:
        config = config_lib.load(args.config)
    except config_lib.ConfigError as e:
        print(f"error: invalid config: {e}", file=sys.stderr)
        return EXIT_ERROR
    from shelf_audit import quiet

    if not args.verbose:
        # Compiling runs no TensorFlow op: its C++ start-up lines (CUDA factories) say nothing here.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with quiet.tfx_compile(verbose=args.verbose):
        from pipeline import kubeflow_runner

        try:
            spec = kubeflow_runner.compile_spec(config, args.pipeline_root, args.image, args.backend)
            platform = kubeflow_runner.platform_spec(config, spec)
            kubeflow_runner.write_spec(spec, args.out, platform)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_ERROR
    if args.backend == kubeflow_runner.KFP:
        print(
            "warning: open-source Kubeflow Pipelines runs no TFX resolver: this spec gates on the recall floors only, "
            "without the no-drop check against the last blessed model (gate.max_drop)",
            file=sys.stderr,
        )
    for name in kubeflow_runner.placeholders(spec):
        print(f"warning: the spec still holds the placeholder {name}: replace it in {args.config}", file=sys.stderr)
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    listed = ", ".join(f"{k}={v.get('defaultValue')!r}" for k, v in sorted(parameters.items()))
    print(f"wrote {args.out}: {len(spec['root']['dag']['tasks'])} tasks, image {args.image or config.kubeflow.image}")
    print(f"runtime parameters (defaults): {listed}")
    if platform:
        print(f"secrets as environment variables of every task: {', '.join(sorted(config.kubeflow.secrets))}")
    return EXIT_OK
