"""ImportSchemaGen that can read the curated schema shipped inside an installed package.

A compiled Kubeflow spec must not carry the compiling machine's paths, so the
pipeline names the schema as ``package://<package>/<file>#sha256=<digest>``:
the executor finds the file inside the package installed in the container
image, checks that its content is the one the spec was compiled with, and
then copies it like TFX's own ImportSchemaGen. The digest is part of the
execution property, so editing the schema also invalidates the cache. Any
other value (a local path, ``gs://...``) is handed to the stock executor.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os

from tfx.components.schema_gen.import_schema_gen import component as import_schema_gen
from tfx.components.schema_gen.import_schema_gen import executor as import_schema_gen_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components import ArtifactDict, ExecProperties

SCHEME = "package://"


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def package_schema_uri(package: str, filename: str) -> str:
    """``package://<package>/<filename>#sha256=<digest of the installed file>``."""
    return f"{SCHEME}{package}/{filename}#sha256={_digest(_package_file(package, filename))}"


def _package_file(package: str, filename: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"schema package {package!r} is not installed in this environment")
    return os.path.join(list(spec.submodule_search_locations)[0], filename)


def resolve_schema_uri(uri: str) -> str:
    """The file a ``schema_file`` value names; ``package://`` URIs are resolved and their digest checked.

    Raises:
        ValueError: the package or file is missing, or its content differs from the compiled digest.
    """
    if not uri.startswith(SCHEME):
        return uri
    location, _, fragment = uri[len(SCHEME) :].partition("#")
    package, _, filename = location.partition("/")
    path = _package_file(package, filename)
    if not os.path.isfile(path):
        raise ValueError(f"schema {uri}: {path} is missing from the installed package {package!r}")
    expected = fragment.removeprefix("sha256=")
    actual = _digest(path)
    if expected and actual != expected:
        raise ValueError(
            f"schema {uri}: the installed {package}/{filename} has sha256 {actual[:12]}..., not the "
            f"{expected[:12]}... this pipeline was compiled with; build the image from the same revision"
        )
    return path


class Executor(import_schema_gen_executor.Executor):
    """TFX's ImportSchemaGen executor, after resolving a ``package://`` schema URI."""

    def Do(self, input_dict: ArtifactDict, output_dict: ArtifactDict, exec_properties: ExecProperties) -> None:
        key = standard_component_specs.SCHEMA_FILE_KEY
        resolved = dict(exec_properties, **{key: resolve_schema_uri(exec_properties[key])})
        super().Do(input_dict, output_dict, resolved)


class CuratedSchemaGen(import_schema_gen.ImportSchemaGen):
    """ImportSchemaGen whose ``schema_file`` may be a ``package://`` URI (see the module docstring)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
