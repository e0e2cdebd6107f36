"""``shelf-audit schedule``: a Kubeflow Pipelines recurring run of a compiled pipeline package.

Takes the package ``shelf-audit compile`` wrote and creates a recurring run of it in an experiment through
the kfp SDK's ``Client.create_recurring_run``. ``--cron`` (a five-field crontab line is converted to KFP's
six fields, seconds first), every ``--param`` (a declared runtime parameter, typed by its declared type)
and ``--max-concurrency`` are checked before the server is contacted.

Exit status: 0 created, 2 an invalid flag value (the message names it), 1 the package cannot be read or
the server refused or could not be reached. ``--help`` imports neither kfp nor TensorFlow.

See docs/scheduling.md#kubeflow-pipelines-a-recurring-run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from shelf_audit.exit_codes import EXIT_ERROR, EXIT_OK, EXIT_USAGE

# KFP API server: "The max concurrency of the recurring run is out of range. Support 1-10."
MAX_CONCURRENCY_RANGE = (1, 10)
# robfig/cron v1 predefined schedules that the KFP API server accepts as they are.
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Values in a shipped config that a user must replace (as pipeline/kubeflow_runner.py marks them).
_PLACEHOLDER = re.compile(r"YOUR_[A-Z_]+")
# Legacy (pipeline spec 2.0) parameter types, mapped to parameterType.
_LEGACY_TYPES = {"INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE", "STRING": "STRING"}


class UsageError(ValueError):
    """A flag value that cannot be scheduled; the message names the flag and the value received."""


class PackageError(ValueError):
    """The package is not a readable KFP pipeline spec."""


# --- Cron --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    question_mark: bool = False


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31, question_mark=True)
_MONTH = _Field("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))
_DOW = _Field("day-of-week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), question_mark=True)
_KFP_FIELDS = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)


def _value(text: str, field: _Field, cron: str) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.low + field.names.index(upper)
    if not (text.isascii() and text.isdigit()):
        raise UsageError(
            f"--cron {field.name} must be a number{' or a name' if field.names else ''}. "
            f"Received {field.name}={text!r} in --cron={cron!r}"
        )
    value = int(text)
    if not field.low <= value <= field.high:
        hint = " (Sunday is 0 on KFP)" if field is _DOW and value == 7 else ""
        raise UsageError(
            f"--cron {field.name} must be {field.low}-{field.high}{hint}. "
            f"Received {field.name}={value} in --cron={cron!r}"
        )
    return value


def _check_field(text: str, field: _Field, cron: str) -> None:
    """Raise :class:`UsageError` unless ``text`` is a list of ``*``, ``?``, N or N-M, each with an optional /STEP."""
    for part in text.split(","):
        span, slash, step = part.partition("/")
        if slash and (not (step.isascii() and step.isdigit()) or int(step) == 0):
            raise UsageError(
                f"--cron {field.name} step must be a whole number >= 1. "
                f"Received {field.name}={text!r} in --cron={cron!r}"
            )
        if span in ("*", "?"):
            if span == "?" and not field.question_mark:
                raise UsageError(
                    f"--cron '?' is allowed in day-of-month and day-of-week only. "
                    f"Received {field.name}={text!r} in --cron={cron!r}"
                )
            continue
        low, dash, high = span.partition("-")
        first = _value(low, field, cron)
        if dash and _value(high, field, cron) < first:
            raise UsageError(
                f"--cron {field.name} range must run from low to high. "
                f"Received {field.name}={text!r} in --cron={cron!r}"
            )


@dataclasses.dataclass(frozen=True)
class Cron:
    """A cron expression as KFP reads it, and what it was written as."""

    kfp: str  # six fields, seconds first (or a descriptor), UTC
    given: str
    converted: bool  # True when ``given`` was a five-field crontab line


def kfp_cron(expression: str) -> Cron:
    """Validate ``expression`` and return it in KFP's six-field form (a five-field crontab line gets second 0).

    Raises:
        UsageError: not 5 or 6 fields, or a field out of range; the message names the field and the value.
    """
    given = expression.strip()
    if given.lower() in CRON_DESCRIPTORS:
        return Cron(given.lower(), given, False)
    fields = given.split()
    if len(fields) == 5:
        converted, fields = True, ["0", *fields]
    elif len(fields) == 6:
        converted = False
    else:
        raise UsageError(
            "--cron must be a crontab line of 5 fields (minute hour day-of-month month day-of-week), "
            "KFP's 6 fields with seconds first, or one of " + ", ".join(CRON_DESCRIPTORS) + ". "
            f"Received --cron={expression!r} ({len(fields)} fields)"
        )
    for text, field in zip(fields, _KFP_FIELDS, strict=True):
        _check_field(text, field, expression)
    return Cron(" ".join(fields), given, converted)


# --- The package and its runtime parameters --------------------------------------------


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A runtime parameter declared in a package's ``root.inputDefinitions``."""

    name: str
    type: str  # parameterType: STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT
    default: Any = None
    has_default: bool = False
    optional: bool = False


def load_package(path: str) -> dict[str, Any]:
    """The pipeline spec in ``path`` (a ``.yaml``/``.yml``/``.json`` file as ``shelf-audit compile`` writes).

    Raises:
        PackageError: missing, unreadable, another format, or not a KFP pipeline spec.
    """
    import yaml

    if not path.endswith((".yaml", ".yml", ".json")):
        raise PackageError(
            f"--package must be a .yaml, .yml or .json pipeline spec (shelf-audit compile). Received --package={path!r}"
        )
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as e:
        raise PackageError(f"cannot read the package {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise PackageError(f"the package {path} is not YAML or JSON: {e}") from e
    spec = docs[0] if docs else None
    if isinstance(spec, dict) and "pipelineSpec" in spec:
        raise PackageError(f"{path} is a job envelope, not a pipeline spec: write the spec with shelf-audit compile")
    if not isinstance(spec, dict) or not {"root", "pipelineInfo", "deploymentSpec"} <= spec.keys():
        raise PackageError(f"{path} is not a KFP pipeline spec (needs root, pipelineInfo and deploymentSpec)")
    return spec


def declared_parameters(spec: Mapping[str, Any]) -> dict[str, Parameter]:
    """Runtime parameters of the pipeline: name -> :class:`Parameter`, from ``root.inputDefinitions``."""
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    out = {}
    for name, definition in declared.items():
        ptype = definition.get("parameterType") or _LEGACY_TYPES.get(definition.get("type", ""), "")
        out[name] = Parameter(
            name=name,
            type=ptype,
            default=definition.get("defaultValue"),
            has_default="defaultValue" in definition,
            optional=bool(definition.get("isOptional")),
        )
    return out


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def typed_value(parameter: Parameter, text: str) -> Any:
    """``text`` as the parameter's declared type.

    Raises:
        UsageError: the text is not a value of that type.
    """

    def wrong(what: str) -> UsageError:
        return UsageError(
            f"--param {parameter.name} must be {what} ({parameter.type} in the package). "
            f"Received {parameter.name}={text!r}"
        )

    kind = parameter.type
    if kind == "STRING":
        return text
    if kind == "NUMBER_INTEGER":
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            raise wrong("an integer")
        return int(text)
    if kind == "NUMBER_DOUBLE":
        try:
            number = float(text)
        except ValueError:
            raise wrong("a number") from None
        if not math.isfinite(number):  # JSON, and so the request, has no NaN or infinity
            raise wrong("a finite number")
        return number
    if kind == "BOOLEAN":
        if text.strip().lower() in _TRUE + _FALSE:
            return text.strip().lower() in _TRUE
        raise wrong("true or false")
    if kind in ("LIST", "STRUCT"):
        wanted = list if kind == "LIST" else dict
        try:
            value = json.loads(text)
        except ValueError:
            raise wrong(f"a JSON {'list' if kind == 'LIST' else 'object'}") from None
        if not isinstance(value, wanted):
            raise wrong(f"a JSON {'list' if kind == 'LIST' else 'object'}")
        return value
    raise UsageError(f"--param {parameter.name} has a type this command cannot set ({kind or 'none'} in the package)")


def parse_params(pairs: Sequence[str], declared: Mapping[str, Parameter]) -> dict[str, Any]:
    """``NAME=VALUE`` flags -> ``{name: typed value}``, checked against the declared runtime parameters.

    Raises:
        UsageError: no ``=``, an unknown or repeated name (the message lists the known ones), a mistyped value, or
            a declared parameter without a default that is not set.
    """
    known = ", ".join(sorted(declared)) or "none"
    values: dict[str, Any] = {}
    for pair in pairs:
        name, eq, text = pair.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"--param must be NAME=VALUE. Received --param={pair!r}")
        if name not in declared:
            raise UsageError(
                f"--param {name} is not a runtime parameter of the package; its parameters are: {known}. "
                f"Received --param={pair!r}"
            )
        if name in values:
            raise UsageError(f"--param {name} is given twice. Received --param={pair!r}")
        values[name] = typed_value(declared[name], text)
    missing = [p.name for p in declared.values() if not p.has_default and not p.optional and p.name not in values]
    if missing:
        raise UsageError("the package has no default for " + ", ".join(missing) + ": set it with --param NAME=VALUE")
    return values


def placeholder_warnings(spec: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Warnings for ``YOUR_...`` placeholders the recurring run would still use (defaults not overridden, image)."""
    out = []
    for p in declared_parameters(spec).values():
        value = params.get(p.name, p.default)
        for name in sorted(set(_PLACEHOLDER.findall(json.dumps(value)))):
            out.append(f"parameter {p.name} = {value!r} still holds the placeholder {name}: pass --param {p.name}=...")
    rest = {k: v for k, v in spec.items() if k != "root"}
    for name in sorted(set(_PLACEHOLDER.findall(json.dumps(rest)))):
        out.append(
            f"the spec (image, Beam args) still holds the placeholder {name}: replace it in the config, recompile"
        )
    return out


# --- The command -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``shelf-audit schedule``."""
    parser.add_argument("--package", required=True, help="pipeline spec written by shelf-audit compile (.yaml/.json)")
    parser.add_argument(
        "--cron",
        required=True,
        help="when to run, in UTC: a crontab line ('0 3 * * *' = 03:00 daily; converted to KFP's 6 fields by "
        "prefixing second 0) or KFP's 6 fields with seconds first ('0 0 3 * * *'), or @daily/@weekly/...",
    )
    parser.add_argument("--host", required=True, help="Kubeflow Pipelines API endpoint, e.g. https://kfp.example.com")
    parser.add_argument("--experiment", help="experiment to put the recurring run in (default: the pipeline's name)")
    parser.add_argument("--name", help="recurring run name (default: <pipeline name>-retrain)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="runtime parameter value (repeatable); unset parameters keep the package's defaults",
    )
    parser.add_argument("--max-concurrency", type=int, default=1, help="runs allowed at once, 1-10 (default 1)")
    parser.add_argument(
        "--no-catchup", action="store_true", help="after a pause, start only the latest missed run, not all of them"
    )
    parser.add_argument("--namespace", help="Kubernetes namespace (multi-user Kubeflow)")


def _yaml_package(path: str, spec: Mapping[str, Any], tmp_dir: str) -> str:
    """A path the kfp SDK accepts: the package itself, or a ``.yaml`` copy of a ``.json`` one."""
    if path.endswith((".yaml", ".yml")):
        return path
    import yaml

    copy = os.path.join(tmp_dir, "pipeline.yaml")
    with open(copy, "w", encoding="utf-8") as f:
        yaml.safe_dump(dict(spec), f, sort_keys=True)
    return copy


def create_recurring_run(
    *,
    host: str,
    namespace: str | None,
    experiment: str,
    job_name: str,
    package_path: str,
    cron: str,
    params: Mapping[str, Any],
    max_concurrency: int,
    no_catchup: bool,
    description: str = "",
) -> tuple[Any, Any]:
    """Get or create the experiment and create the recurring run with the kfp SDK client.

    Returns:
        ``(experiment, recurring_run)`` as the server returned them (``V2beta1Experiment``, ``V2beta1RecurringRun``).

    Raises:
        Exception: whatever the SDK raises (``ApiException`` for a refusal, connection errors for no server).
    """
    import kfp

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning
        )
        client = kfp.Client(host=host, **({"namespace": namespace} if namespace else {}))
    found = client.create_experiment(name=experiment, namespace=namespace)  # gets it when it exists
    created = client.create_recurring_run(
        experiment_id=found.experiment_id,
        job_name=job_name,
        description=description or None,
        cron_expression=cron,
        max_concurrency=max_concurrency,
        no_catchup=no_catchup,
        params=dict(params),
        pipeline_package_path=package_path,
    )
    return found, created


def _format_parameters(declared: Mapping[str, Parameter], params: Mapping[str, Any]) -> list[str]:
    rows = [
        (name, repr(params[name] if name in params else declared[name].default), name in params)
        for name in sorted(declared)
    ]
    name_width = max((len(r[0]) for r in rows), default=0)
    value_width = max((len(r[1]) for r in rows), default=0)
    return [
        f"    {name:<{name_width}}  {value:<{value_width}}  ({'set with --param' if given else 'package default'})"
        for name, value, given in rows
    ]


def run(args: argparse.Namespace) -> int:
    """Entry point of ``shelf-audit schedule``."""
    try:
        spec = load_package(args.package)
    except PackageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    declared = declared_parameters(spec)
    try:
        cron = kfp_cron(args.cron)
        params = parse_params(args.param, declared)
        low, high = MAX_CONCURRENCY_RANGE
        if not low <= args.max_concurrency <= high:
            raise UsageError(
                f"--max-concurrency must be {low}-{high}. Received --max-concurrency={args.max_concurrency}"
            )
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for warning in placeholder_warnings(spec, params):
        print(f"warning: {warning}", file=sys.stderr)
    pipeline_name = spec["pipelineInfo"].get("name", "pipeline")
    experiment = args.experiment or pipeline_name
    job_name = args.name or f"{pipeline_name}-retrain"
    with tempfile.TemporaryDirectory(prefix="shelf-audit-schedule-") as tmp:
        try:
            found, created = create_recurring_run(
                host=args.host,
                namespace=args.namespace,
                experiment=experiment,
                job_name=job_name,
                package_path=_yaml_package(args.package, spec, tmp),
                cron=cron.kfp,
                params=params,
                max_concurrency=args.max_concurrency,
                no_catchup=args.no_catchup,
                description=f"shelf-audit schedule of {os.path.basename(args.package)}, cron {cron.kfp} (UTC)",
            )
        except Exception as e:  # noqa: BLE001 - any SDK or server failure ends the command with its message.
            print(f"error: could not create the recurring run on {args.host}: {type(e).__name__}: {e}", file=sys.stderr)
            return EXIT_ERROR
    origin = f"; from the crontab line {cron.given!r}" if cron.converted else ""
    print(
        f"created recurring run {created.recurring_run_id} {job_name!r} "
        f"in experiment {experiment!r} ({found.experiment_id}) on {args.host}"
    )
    print(f"  cron {cron.kfp!r} (KFP: seconds first, UTC{origin})")
    print(f"  max concurrency {args.max_concurrency}; catch up missed runs: {'no' if args.no_catchup else 'yes'}")
    print(
        f"  package {args.package}: pipeline {pipeline_name}, {len(spec['root'].get('dag', {}).get('tasks', {}))} tasks"
    )
    print("  runtime parameters:")
    print("\n".join(_format_parameters(declared, params)))
    return EXIT_OK
