"""Component tier: the recurring-run request the kfp SDK builds for ``shelf-audit schedule``, without a server.

The package is the production spec compiled by ``pipeline.kubeflow_runner``
(once per module). The command builds a real ``kfp.Client`` against an
unreachable host; the generated API methods it calls (health check,
experiment lookup and creation, recurring-run creation) are patched to
capture their request bodies, which are asserted as they would go on the
wire (``ApiClient.sanitize_for_serialization``).
"""

from __future__ import annotations

import contextlib
import json
import types
from pathlib import Path
from unittest import mock

import kfp_server_api
import pytest
from kfp.client import client as kfp_client

from pipeline import config as config_lib
from pipeline import kubeflow_runner
from shelf_audit import cli

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> types.SimpleNamespace:
    """The production spec compiled with root gs://ml/root, written as pipeline.yaml and pipeline.json."""
    spec = kubeflow_runner.compile_spec(config_lib.load(REPO / "configs" / "production.toml"), "gs://ml/root")
    folder = tmp_path_factory.mktemp("schedule")
    kubeflow_runner.write_spec(spec, str(folder / "pipeline.yaml"))
    kubeflow_runner.write_spec(spec, str(folder / "pipeline.json"))
    return types.SimpleNamespace(spec=spec, yaml=folder / "pipeline.yaml", json=folder / "pipeline.json")


@pytest.fixture
def kfp_api(tmp_path):
    """Mocks of the generated KFP API methods the client calls; no experiment exists until one is created."""
    api = kfp_server_api
    with contextlib.ExitStack() as stack:

        def patch(cls, name, *args, **kwargs):
            return stack.enter_context(mock.patch.object(cls, name, *args, **kwargs))

        # no ~/.config/kfp/context.json of the machine running the tests
        patch(kfp_client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-kfp-context.json"))
        yield types.SimpleNamespace(
            healthz=patch(
                api.HealthzServiceApi, "get_healthz", return_value=api.V2beta1GetHealthzResponse(multi_user=False)
            ),
            list_experiments=patch(
                api.ExperimentServiceApi, "list_experiments", return_value=api.V2beta1ListExperimentsResponse()
            ),
            create_experiment=patch(
                api.ExperimentServiceApi,
                "create_experiment",
                side_effect=lambda body: api.V2beta1Experiment(experiment_id="exp-new", display_name=body.display_name),
            ),
            create_recurring_run=patch(
                api.RecurringRunServiceApi,
                "create_recurring_run",
                side_effect=lambda body: api.V2beta1RecurringRun(
                    recurring_run_id="rr-42", display_name=body.display_name
                ),
            ),
        )


def _wire(body) -> dict:
    """A request body as the client serializes it to JSON."""
    return kfp_server_api.ApiClient().sanitize_for_serialization(body)


def _as_floats(value):
    """Numbers as floats: the SDK passes the spec through protobuf, whose Struct numbers are doubles."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return value


def _schedule(package: Path, *extra: str) -> int:
    return cli.main(["schedule", "--package", str(package), "--host", UNREACHABLE, *extra])


def test_the_request_carries_cron_typed_parameters_concurrency_catchup_and_the_spec(packages, kfp_api, capsys):
    status = _schedule(
        packages.yaml,
        *("--cron", "0 3 * * *", "--experiment", "shelf-audit-nightly", "--name", "nightly"),
        *("--param", "epochs=3", "--param", "bucket=gs://models/shelf", "--param", "input_base=gs://photos"),
        *("--max-concurrency", "2", "--no-catchup"),
    )
    out, err = capsys.readouterr()
    assert status == cli.EXIT_OK, err

    kfp_api.create_recurring_run.assert_called_once()
    wire = _wire(kfp_api.create_recurring_run.call_args.kwargs["body"])
    assert wire["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    parameters = wire["runtime_config"]["parameters"]
    assert parameters == {"epochs": 3, "bucket": "gs://models/shelf", "input_base": "gs://photos"}
    assert type(parameters["epochs"]) is int
    assert (wire["max_concurrency"], wire["no_catchup"], wire["mode"]) == (2, True, "ENABLE")
    assert (wire["display_name"], wire["experiment_id"]) == ("nightly", "exp-new")
    assert "pipeline_version_reference" not in wire  # the spec travels inline, not as an uploaded version
    assert wire["pipeline_spec"] == _as_floats(packages.spec)
    assert wire["pipeline_spec"]["defaultPipelineRoot"] == "gs://ml/root"

    # get or create: looked up by name first, then created
    lookup = json.loads(kfp_api.list_experiments.call_args.kwargs["filter"])
    assert lookup["predicates"][0]["stringValue"] == "shelf-audit-nightly"
    assert _wire(kfp_api.create_experiment.call_args.kwargs["body"])["display_name"] == "shelf-audit-nightly"

    assert "created recurring run rr-42 'nightly' in experiment 'shelf-audit-nightly' (exp-new)" in out
    assert "cron '0 0 3 * * *' (KFP: seconds first, UTC; from the crontab line '0 3 * * *')" in out
    assert "max concurrency 2; catch up missed runs: no" in out
    assert "epochs        3 " in out and "(set with --param)" in out
    assert "range_config  ''" in out and "(package default)" in out


def test_an_existing_experiment_is_reused_and_defaults_apply(packages, kfp_api, capsys):
    kfp_api.list_experiments.return_value = kfp_server_api.V2beta1ListExperimentsResponse(
        experiments=[kfp_server_api.V2beta1Experiment(experiment_id="exp-old", display_name="shelf-audit")]
    )
    status = _schedule(packages.yaml, "--cron", "0 0 3 ? * MON")
    assert status == cli.EXIT_OK, capsys.readouterr().err

    kfp_api.create_experiment.assert_not_called()
    wire = _wire(kfp_api.create_recurring_run.call_args.kwargs["body"])
    assert wire["experiment_id"] == "exp-old"
    assert wire["trigger"]["cron_schedule"]["cron"] == "0 0 3 ? * MON"  # six fields pass as they are
    assert wire["runtime_config"].get("parameters", {}) == {}  # every parameter keeps the package default
    assert (wire["max_concurrency"], wire["no_catchup"]) == (1, False)
    pipeline = packages.spec["pipelineInfo"]["name"]
    assert wire["display_name"] == f"{pipeline}-retrain"
    assert json.loads(kfp_api.list_experiments.call_args.kwargs["filter"])["predicates"][0]["stringValue"] == pipeline


def test_a_namespace_goes_to_the_experiment_and_skips_the_health_probe(packages, kfp_api, capsys):
    status = _schedule(packages.yaml, "--cron", "@daily", "--namespace", "team-a")
    assert status == cli.EXIT_OK, capsys.readouterr().err
    kfp_api.healthz.assert_not_called()
    assert kfp_api.list_experiments.call_args.kwargs["namespace"] == "team-a"
    assert _wire(kfp_api.create_experiment.call_args.kwargs["body"])["namespace"] == "team-a"
    assert _wire(kfp_api.create_recurring_run.call_args.kwargs["body"])["trigger"]["cron_schedule"]["cron"] == "@daily"


def test_a_json_package_sends_the_same_spec(packages, kfp_api, capsys):
    status = _schedule(packages.json, "--cron", "0 3 * * *", "--param", "epochs=4")
    assert status == cli.EXIT_OK, capsys.readouterr().err
    wire = _wire(kfp_api.create_recurring_run.call_args.kwargs["body"])
    assert wire["pipeline_spec"] == _as_floats(packages.spec)
    assert wire["runtime_config"]["parameters"] == {"epochs": 4}


def test_an_unknown_parameter_lists_the_package_parameters_and_sends_nothing(packages, kfp_api, capsys):
    status = _schedule(packages.yaml, "--cron", "0 3 * * *", "--param", "epoch=3")
    assert status == cli.EXIT_USAGE
    known = ", ".join(sorted(packages.spec["root"]["inputDefinitions"]["parameters"]))
    assert f"--param epoch is not a runtime parameter of the package; its parameters are: {known}." in (
        capsys.readouterr().err
    )
    for api_call in vars(kfp_api).values():
        api_call.assert_not_called()


def test_a_server_refusal_exits_1_with_the_servers_reason(packages, kfp_api, capsys):
    kfp_api.create_recurring_run.side_effect = kfp_server_api.ApiException(status=400, reason="Bad Request")
    status = _schedule(packages.yaml, "--cron", "0 3 * * *")
    assert status == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"error: could not create the recurring run on {UNREACHABLE}: ApiException: (400)" in err
    assert "Bad Request" in err
