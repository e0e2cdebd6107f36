"""Unit tier: what ``shelf-audit schedule`` checks before it contacts Kubeflow Pipelines.

Cron conversion (KFP reads six fields, seconds first), runtime parameters
against a package's declarations with their types, and the command's refusals
on a small hand-written package. The request the kfp SDK builds from a real
compiled spec is tested in ``test_schedule_kfp.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from support.refusals import refusal

from shelf_audit import cli, schedule_cmd
from shelf_audit.schedule_cmd import Parameter, UsageError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]

# A package with one parameter of each type KFP declares, two of them without a default.
SPEC = {
    "pipelineInfo": {"name": "tiny"},
    "deploymentSpec": {"executors": {"a_executor": {"container": {"image": "registry/tiny:1"}}}},
    "root": {
        "dag": {"tasks": {"a": {}}},
        "inputDefinitions": {
            "parameters": {
                "input_base": {"parameterType": "STRING", "defaultValue": "gs://data"},
                "epochs": {"parameterType": "NUMBER_INTEGER", "defaultValue": 5},
                "rate": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 0.5},
                "dry": {"parameterType": "BOOLEAN", "defaultValue": False},
                "spans": {"parameterType": "LIST", "isOptional": True},
                "extra": {"parameterType": "STRUCT", "defaultValue": {}},
                "bucket": {"parameterType": "STRING"},
            }
        },
    },
}


@pytest.fixture
def package(tmp_path) -> Path:
    """SPEC written as a .yaml package."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def _schedule(package: Path, *extra: str) -> list[str]:
    return ["schedule", "--package", str(package), "--cron", "0 3 * * *", "--host", "http://127.0.0.1:9", *extra]


# --- Cron ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, kfp, converted",
    [
        ("0 3 * * *", "0 0 3 * * *", True),  # crontab 03:00 daily; KFP would read it as minute 3 of every hour
        ("30 2 * * 1-5", "0 30 2 * * 1-5", True),
        ("*/15 6-18 * * MON-FRI", "0 */15 6-18 * * MON-FRI", True),
        ("0 0 1 jan,jul *", "0 0 0 1 jan,jul *", True),
        ("  0 3 * * *  ", "0 0 3 * * *", True),
        ("0 0 3 * * *", "0 0 3 * * *", False),  # KFP's own form passes as it is
        ("0 0 3 ? * SUN", "0 0 3 ? * SUN", False),
        ("15 0 */6 1,15 * *", "15 0 */6 1,15 * *", False),
        ("@daily", "@daily", False),
        ("@Weekly", "@weekly", False),
    ],
)
def test_cron_is_converted_to_kfp_six_fields(given, kfp, converted):
    cron = schedule_cmd.kfp_cron(given)
    assert (cron.kfp, cron.converted) == (kfp, converted)


@pytest.mark.parametrize(
    "given, message",
    [
        ("0 3 * *", "--cron must be a crontab line of 5 fields"),
        ("0 0 0 3 * * *", "(7 fields)"),
        ("", "(0 fields)"),
        ("@every 1h", "(2 fields)"),
        ("0 24 * * *", "--cron hour must be 0-23. Received hour=24 in --cron='0 24 * * *'"),
        ("60 3 * * *", "--cron minute must be 0-59. Received minute=60"),
        ("0 3 0 * *", "--cron day-of-month must be 1-31. Received day-of-month=0"),
        ("0 3 * 13 *", "--cron month must be 1-12. Received month=13"),
        ("0 3 * * 7", "--cron day-of-week must be 0-6 (Sunday is 0 on KFP). Received day-of-week=7"),
        ("0 3 * FOO *", "--cron month must be a number or a name. Received month='FOO'"),
        ("0 x * * *", "--cron hour must be a number. Received hour='x'"),
        ("0 3 * * */0", "--cron day-of-week step must be a whole number >= 1. Received day-of-week='*/0'"),
        ("0 3 10-2 * *", "--cron day-of-month range must run from low to high. Received day-of-month='10-2'"),
        ("? 3 * * *", "--cron '?' is allowed in day-of-month and day-of-week only. Received minute='?'"),
        ("0 3,, * * *", "--cron hour must be a number. Received hour=''"),
        ("61 0 3 * * *", "--cron second must be 0-59. Received second=61"),
    ],
)
def test_bad_cron_is_refused_naming_the_field_and_value(given, message):
    assert message in refusal(UsageError, schedule_cmd.kfp_cron, given)


# --- Runtime parameters ------------------------------------------------------------------


def test_declared_parameters_are_read_with_type_default_and_optionality():
    declared = schedule_cmd.declared_parameters(SPEC)
    assert sorted(declared) == sorted(SPEC["root"]["inputDefinitions"]["parameters"])
    assert declared["epochs"] == Parameter("epochs", "NUMBER_INTEGER", 5, has_default=True)
    assert declared["bucket"] == Parameter("bucket", "STRING", None, has_default=False)
    assert declared["spans"].optional and not declared["spans"].has_default


def test_legacy_parameter_types_are_mapped():
    legacy = {"root": {"inputDefinitions": {"parameters": {"n": {"type": "INT"}, "x": {"type": "DOUBLE"}}}}}
    declared = schedule_cmd.declared_parameters(legacy)
    assert (declared["n"].type, declared["x"].type) == ("NUMBER_INTEGER", "NUMBER_DOUBLE")


@pytest.mark.parametrize(
    "ptype, text, value",
    [
        ("STRING", "gs://b/x=1", "gs://b/x=1"),
        ("STRING", "", ""),
        ("STRING", "7", "7"),
        ("NUMBER_INTEGER", "12", 12),
        ("NUMBER_INTEGER", "-3", -3),
        ("NUMBER_DOUBLE", "0.25", 0.25),
        ("NUMBER_DOUBLE", "3", 3.0),
        ("BOOLEAN", "true", True),
        ("BOOLEAN", "No", False),
        ("LIST", "[1, 2]", [1, 2]),
        ("STRUCT", '{"a": 1}', {"a": 1}),
    ],
)
def test_values_are_typed_by_the_declared_parameter_type(ptype, text, value):
    typed = schedule_cmd.typed_value(Parameter("p", ptype), text)
    assert typed == value and type(typed) is type(value)


@pytest.mark.parametrize(
    "ptype, text, message",
    [
        ("NUMBER_INTEGER", "ten", "--param p must be an integer (NUMBER_INTEGER in the package). Received p='ten'"),
        ("NUMBER_INTEGER", "2.5", "must be an integer"),
        ("NUMBER_DOUBLE", "fast", "--param p must be a number (NUMBER_DOUBLE in the package). Received p='fast'"),
        ("NUMBER_DOUBLE", "nan", "--param p must be a finite number"),
        ("BOOLEAN", "maybe", "--param p must be true or false"),
        ("LIST", '{"a": 1}', "--param p must be a JSON list"),
        ("STRUCT", "[1]", "--param p must be a JSON object"),
        ("STRUCT", "{oops", "--param p must be a JSON object"),
        ("TASK_FINAL_STATUS", "x", "--param p has a type this command cannot set (TASK_FINAL_STATUS"),
    ],
)
def test_mistyped_values_are_refused_naming_parameter_type_and_value(ptype, text, message):
    assert message in refusal(UsageError, schedule_cmd.typed_value, Parameter("p", ptype), text)


def test_params_are_checked_against_the_declared_ones():
    declared = schedule_cmd.declared_parameters(SPEC)
    values = schedule_cmd.parse_params(["epochs=3", "bucket=gs://m", "input_base=gs://a=b"], declared)
    assert values == {"epochs": 3, "bucket": "gs://m", "input_base": "gs://a=b"}


@pytest.mark.parametrize(
    "pairs, message",
    [
        (
            ["bucket=gs://m", "epoch=3"],
            "--param epoch is not a runtime parameter of the package; its parameters are: "
            "bucket, dry, epochs, extra, input_base, rate, spans. Received --param='epoch=3'",
        ),
        (["bucket=gs://m", "epochs"], "--param must be NAME=VALUE. Received --param='epochs'"),
        (["bucket=gs://m", "=3"], "--param must be NAME=VALUE. Received --param='=3'"),
        (["bucket=gs://m", "epochs=3", "epochs=4"], "--param epochs is given twice. Received --param='epochs=4'"),
        (["epochs=3"], "the package has no default for bucket: set it with --param NAME=VALUE"),
    ],
)
def test_bad_params_are_refused_with_the_known_names(pairs, message):
    assert message in refusal(UsageError, schedule_cmd.parse_params, pairs, schedule_cmd.declared_parameters(SPEC))


def test_placeholders_left_in_effective_values_and_the_spec_are_warned_about():
    spec = {**SPEC, "deploymentSpec": {"executors": {"a": {"container": {"image": "YOUR_REGISTRY/x:1"}}}}}
    spec["root"] = {
        "inputDefinitions": {"parameters": {"bucket": {"parameterType": "STRING", "defaultValue": "gs://YOUR_B"}}}
    }
    assert schedule_cmd.placeholder_warnings(spec, {}) == [
        "parameter bucket = 'gs://YOUR_B' still holds the placeholder YOUR_B: pass --param bucket=...",
        "the spec (image, Beam args) still holds the placeholder YOUR_REGISTRY: replace it in the config, recompile",
    ]
    assert len(schedule_cmd.placeholder_warnings(spec, {"bucket": "gs://models"})) == 1


# --- The command's refusals: nothing is sent ----------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cron", "0 3 * *"], "error: --cron must be a crontab line of 5 fields"),
        (["--param", "bucket=gs://m", "--param", "epoch=3"], "error: --param epoch is not a runtime parameter"),
        (["--param", "bucket=gs://m", "--param", "epochs=3.5"], "error: --param epochs must be an integer"),
        ([], "error: the package has no default for bucket"),
        (["--param", "bucket=gs://m", "--max-concurrency", "0"], "error: --max-concurrency must be 1-10. Received"),
        (["--param", "bucket=gs://m", "--max-concurrency", "11"], "Received --max-concurrency=11"),
    ],
)
def test_invalid_flags_exit_2_before_any_request(package, capsys, extra, message):
    with mock.patch.object(schedule_cmd, "create_recurring_run") as create:
        status = cli.main(_schedule(package, *extra))
    assert status == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    create.assert_not_called()


@pytest.mark.parametrize(
    "content, name, message",
    [
        (None, "missing.yaml", "cannot read the package"),
        ("x", "pipeline.tar.gz", "--package must be a .yaml, .yml or .json pipeline spec"),
        ("a: [1,", "pipeline.yaml", "is not YAML or JSON"),
        ("pipelineSpec: {root: {}}", "job.json", "is a job envelope, not a pipeline spec"),
        ("name: component\ninputs: []", "component.yaml", "is not a KFP pipeline spec"),
        ("", "empty.yaml", "is not a KFP pipeline spec"),
    ],
)
def test_an_unusable_package_exits_1_naming_it(tmp_path, capsys, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with mock.patch.object(schedule_cmd, "create_recurring_run") as create:
        status = cli.main(_schedule(path, "--param", "bucket=gs://m"))
    assert status == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert message in err and name in err
    create.assert_not_called()


def test_a_valid_request_is_handed_to_the_client_with_typed_values(package, capsys):
    found = mock.Mock(experiment_id="exp-1")
    created = mock.Mock(recurring_run_id="rr-1")
    with mock.patch.object(schedule_cmd, "create_recurring_run", return_value=(found, created)) as create:
        status = cli.main(_schedule(package, "--param", "bucket=gs://m", "--param", "dry=true", "--no-catchup"))
    assert status == cli.EXIT_OK
    kwargs = create.call_args.kwargs
    assert kwargs["cron"] == "0 0 3 * * *"
    assert kwargs["params"] == {"bucket": "gs://m", "dry": True}
    assert (kwargs["experiment"], kwargs["job_name"]) == ("tiny", "tiny-retrain")
    assert (kwargs["max_concurrency"], kwargs["no_catchup"], kwargs["namespace"]) == (1, True, None)
    assert kwargs["package_path"] == str(package)
    out = capsys.readouterr().out
    assert "created recurring run rr-1 'tiny-retrain' in experiment 'tiny' (exp-1)" in out
    assert "from the crontab line '0 3 * * *'" in out


def test_help_imports_neither_tensorflow_nor_kfp():
    code = (
        "import sys\n"
        "from shelf_audit import cli\n"
        "try:\n"
        "    cli.main(['schedule', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(sorted(m for m in ('tensorflow', 'kfp', 'tfx') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--cron" in proc.stdout and "--max-concurrency" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
