"""What the open-source KFP backend would refuse in a spec this replay runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def kfp_oss_blockers(spec: Mapping[str, Any]) -> list[str]:
    """Reasons an open-source KFP V2 backend (kubeflow/pipelines ``backend/src/v2``) would not run ``spec``.

    This replay emulates resolvers and ``preCacheCheck`` the way Vertex AI Pipelines runs them;
    this function names what the open-source backend does instead.
    """
    problems = []
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    for label, executor in sorted(executors.items()):
        if "resolver" in executor:
            problems.append(
                f"executor {label}: resolver executors are not implemented by the open-source backend "
                "(compiler/argocompiler/dag.go: 'resolver executors not implemented'); the run is refused"
            )
        if "preCacheCheck" in executor.get("container", {}).get("lifecycle", {}):
            problems.append(
                f"executor {label}: lifecycle.preCacheCheck is never run by the open-source backend "
                "(nothing under backend/ reads it); the executor gets no span/fingerprint/resolved pattern"
            )
    for name, task in sorted(spec.get("root", {}).get("dag", {}).get("tasks", {}).items()):
        for parameter, value in sorted(task.get("inputs", {}).get("parameters", {}).items()):
            if "constantValue" in value.get("runtimeValue", {}):
                problems.append(
                    f"task {name} parameter {parameter}: deprecated runtimeValue.constantValue; the driver only "
                    "resolves runtimeValue.constant (driver/resolve.go resolveInputParameter)"
                )
    for name, definition in sorted(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}).items()):
        if "parameterType" not in definition:
            problems.append(
                f"runtime parameter {name}: no parameterType; the API server refuses a value for it "
                "('input parameter ... has unspecified type', apiserver/template/v2_template.go)"
            )
    return problems
