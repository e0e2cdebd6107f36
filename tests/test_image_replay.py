"""Image tier: the compiled Kubeflow spec runs, task by task, in the project's real image.

The image is built once per content (:mod:`support.image_helpers`); ``shelf-audit compile
--image`` names it in the spec; :mod:`support.kfp_replay` runs every container task with
``docker run`` of that image (:class:`~support.kfp_replay.DockerRunner`): the spec's
command and arguments as written, the pipeline root, the data and the bucket on mounted
volumes, no network, the Beam stages (two worker processes) inside the container. The
signing key reaches the pusher the way a cluster hands it over: a Kubernetes secret named
in ``kubeflow.secrets``, as an environment variable. The run ends with a blessed,
signed and verified model in the bucket. The host replay (``test_kfp_replay.py``, tier
``kfp``) stays the fast check of the spec itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from support import image_helpers, kfp_replay, tiny

from bucket import signing, verify
from bucket import versions as bucket_versions
from pipeline import config as config_lib
from shelf_audit import cli
from shelf_data import synth

pytestmark = pytest.mark.image

BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
SIGNING_VARIABLE = "SHELF_AUDIT_SIGNING_PEM"
SIGNING_SECRET = ("shelf-audit-signing", "key.pem")


@dataclasses.dataclass
class Replayed:
    image: str
    spec: dict
    platform: dict
    config: config_lib.PipelineConfig
    replay: kfp_replay.Replay
    result: kfp_replay.RunResult
    bucket: str
    public_key: bytes
    count: int


def _replay(work_dir: Path) -> Replayed:
    image = image_helpers.ensure_image()
    data, bucket = work_dir / "data", work_dir / "bucket"
    count = synth.generate(str(data), span=1, count=160, seed=11).count
    settings = {
        "beam_args": BEAM_ARGS,
        "data.input_base": str(data),
        "push.bucket": str(bucket),
        "push.signing_key": f"env:{SIGNING_VARIABLE}",
        "kubeflow.secrets": {SIGNING_VARIABLE: "/".join(SIGNING_SECRET)},
    }
    config_path = tiny.write_tiny_config(work_dir / "tiny.toml", "tiny-image", settings)
    spec_path = work_dir / "pipeline.yaml"
    root = work_dir / "pipeline_root"
    status = cli.main(
        ["compile", "--config", str(config_path), "--pipeline-root", str(root), "--out", str(spec_path)]
        + ["--image", image]
    )
    assert status == 0
    spec, platform = yaml.safe_load_all(spec_path.read_text())
    private, public = signing.generate_private_key_pem()
    replay = kfp_replay.Replay(
        spec,
        runner=kfp_replay.DockerRunner(image, extra_mounts=[data, bucket]),
        work_dir=work_dir / "replay",
        pipeline_root=root,
        forbidden_paths=[kfp_replay.REPO_ROOT],
        platform=platform,
        secrets={SIGNING_SECRET: private.decode()},
    )
    result = replay.run()  # the spec's defaults: the config's data root, bucket and epochs
    config = config_lib.load(config_path)
    return Replayed(image, spec, platform, config, replay, result, str(bucket), public, count)


@pytest.fixture(scope="session")
def replayed(tmp_path_factory) -> Replayed:
    return kfp_replay.shared(tmp_path_factory, "image-run", _replay)


def test_every_task_of_the_spec_ran_in_the_image(replayed):
    r = replayed
    assert set(r.result.records) == set(r.spec["root"]["dag"]["tasks"])
    executors = r.spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values() if "container" in e} == {r.image}
    for name, record in r.result.records.items():
        if record.kind == "container":
            assert record.returncode == 0, name
            command = json.loads((record.task_dir / "command.json").read_text())
            assert command["executable"] == str(kfp_replay.DockerRunner.PYTHON), (name, command)
    # The span driver ran in the image too, before ExampleGen, and resolved span 1.
    pre = r.result.records["ImportExampleGen"].pre_cache_check
    assert pre is not None and pre["returncode"] == 0
    assert pre["output"]["parameterValues"]["span"] == 1


def test_the_beam_stages_ran_in_the_container_on_the_mounted_data(replayed):
    r = replayed
    example_gen = r.result.records["ImportExampleGen"]
    assert f"{r.config.data.input_base}/span-1/" in example_gen.stderr
    examples = r.result.artifact("ImportExampleGen", "examples")
    from support.span_helpers import count_records

    assert count_records(examples["uri"]) == r.count


def test_the_bucket_holds_a_blessed_signed_verified_model(replayed):
    r = replayed
    model = r.config.push.model_name
    latest = bucket_versions.read_latest(r.bucket, model)
    assert bucket_versions.list_versions(r.bucket, model) == [latest]
    assert r.result.artifact("Evaluator", "blessing")["metadata"]["blessed"] == 1
    verdict = verify.verify_version(r.bucket, model, latest, public_key=signing.load_public_key(r.public_key))
    assert verdict.ok, verdict.problems
    assert verdict.signature.startswith("signature ok (pinned key"), verdict.signature


def test_a_missing_secret_fails_the_task_that_needs_it(replayed, tmp_path):
    r = replayed
    replay = kfp_replay.Replay(
        r.spec,
        runner=kfp_replay.DockerRunner(r.image),
        work_dir=tmp_path,
        platform=r.platform,
        secrets={},
    )
    with pytest.raises(kfp_replay.ReplayError, match="secret shelf-audit-signing has no key key.pem"):
        replay.run(only=["ImportExampleGen"])
