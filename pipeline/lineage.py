"""A published version's chain back to its spans: version -> run -> model -> examples -> ExampleGen -> spans.

:func:`from_store` walks ML Metadata events from the model artifact id the
manifest records: the model's producing execution (the Trainer), its
``examples`` input (Transform's transformed examples), their producer
(Transform), its ``examples`` input (ExampleGen's artifacts, which carry
``span``, ``version`` and ``input_fingerprint``). :func:`from_manifest`
builds the same chain from the manifest's ``lineage`` block alone, for when
the store cannot be reached.

Only ``ml_metadata`` is imported, and only by the functions that open or
read a store: no TensorFlow, so ``shelf-audit models lineage`` stays quick.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

# Walking up from the model: Trainer <- Transform <- ExampleGen; a few more hops are tolerated.
_MAX_HOPS = 6
_EXAMPLES_INPUT = "examples"


class LineageError(LookupError):
    """The store does not hold the manifest's artifacts (missing ids, or ids of another store)."""


@dataclasses.dataclass(frozen=True)
class Link:
    """One artifact of the chain."""

    role: str  # "model", "transformed examples" or "ExampleGen examples"
    artifact_id: int | None
    uri: str | None
    producer: str | None = None  # node id of the execution that made it (ML Metadata only)
    execution_id: int | None = None
    run_id: str | None = None  # the pipeline run of that execution
    spans: tuple[int, ...] = ()  # ExampleGen examples: every span read (a window records several)
    version: int | None = None
    input_fingerprint: str | None = None


@dataclasses.dataclass(frozen=True)
class Chain:
    """A version's lineage; ``source`` says where it was read from."""

    version: str
    pipeline_name: str | None
    pipeline_run_id: str | None  # the run that published the version
    links: list[Link]
    source: str

    @property
    def spans(self) -> list[int]:
        """Spans of the ExampleGen artifacts, ascending."""
        return sorted({span for link in self.links for span in link.spans})


def from_manifest(version: str, manifest: dict[str, Any]) -> Chain:
    """The chain as the manifest's ``lineage`` records it (no producers: those live in ML Metadata)."""
    lineage = manifest.get("lineage") or {}
    mlmd = lineage.get("mlmd") or {}
    links = [
        Link("model", mlmd.get("model_artifact_id"), mlmd.get("model_uri")),
        Link(
            "transformed examples", mlmd.get("transformed_examples_artifact_id"), mlmd.get("transformed_examples_uri")
        ),
    ]
    for entry in lineage.get("examples") or []:
        links.append(
            Link(
                "ExampleGen examples",
                entry.get("artifact_id"),
                entry.get("uri"),
                spans=tuple(entry.get("spans") or ([entry["span"]] if entry.get("span") is not None else [])),
                version=entry.get("version"),
                input_fingerprint=entry.get("input_fingerprint"),
            )
        )
    if not lineage.get("examples"):  # manifests written before the examples block: spans only
        links += [Link("ExampleGen examples", None, None, spans=(span,)) for span in lineage.get("spans") or []]
    return Chain(version, lineage.get("pipeline_name"), lineage.get("pipeline_run_id"), links, "the manifest")


def open_sqlite(path: str) -> Any:
    """A read-only ML Metadata store on the SQLite file ``path``.

    Raises:
        FileNotFoundError: there is no such file (opening it would create an empty store).
    """
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ML Metadata file {path}")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def custom_property(artifact: Any, key: str) -> Any:
    """An ML Metadata artifact's custom property as a Python value, or None when it is not set."""
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _spans(artifact: Any) -> tuple[int, ...]:
    # A window of spans lists them all in "spans" ("3,4"); TFX's own "span" is the newest one.
    window = custom_property(artifact, "spans")
    if window:
        return tuple(sorted(int(s) for s in str(window).split(",") if s.strip()))
    span = custom_property(artifact, "span")
    return () if span is None else (int(span),)


class _Walker:
    """Reads producers and inputs of artifacts from one store, caching context type names."""

    def __init__(self, store: Any):
        self.store = store
        self._context_types: dict[int, str] = {}

    def _context_names(self, execution_id: int) -> dict[str, str]:
        contexts = self.store.get_contexts_by_execution(execution_id)
        unknown = sorted({c.type_id for c in contexts} - set(self._context_types))
        if unknown:
            self._context_types.update({t.id: t.name for t in self.store.get_context_types_by_id(unknown)})
        return {self._context_types[c.type_id]: c.name for c in contexts}

    def producer(self, artifact_id: int) -> tuple[int | None, str | None, str | None]:
        """``(execution id, node id, run id)`` of the execution that output ``artifact_id`` first."""
        from ml_metadata.proto import metadata_store_pb2

        outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id]) if e.type in outputs]
        if not events:
            return None, None, None
        execution_id = min(e.execution_id for e in events)  # a cached re-run also outputs it; the first made it
        names = self._context_names(execution_id)
        node = names.get("node")
        return execution_id, node.split(".", 1)[-1] if node else None, names.get("pipeline_run")

    def examples_inputs(self, execution_id: int) -> list[Any]:
        """Artifacts the execution read under the input key ``examples``."""
        from ml_metadata.proto import metadata_store_pb2

        inputs = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
        ids = [
            e.artifact_id
            for e in self.store.get_events_by_execution_ids([execution_id])
            if e.type in inputs and e.path.steps and e.path.steps[0].key == _EXAMPLES_INPUT
        ]
        return sorted(self.store.get_artifacts_by_id(ids), key=lambda a: a.id) if ids else []


def from_store(store: Any, version: str, manifest: dict[str, Any], where: str) -> Chain:
    """The chain walked through ML Metadata events from the manifest's model artifact id.

    Args:
        store: an open ``MetadataStore`` (e.g. :func:`open_sqlite`).
        version: the bucket version.
        manifest: its manifest.
        where: the store in words, for ``Chain.source``.

    Raises:
        LineageError: the manifest has no model artifact id, the store lacks
            it, or the store's artifact of that id is another model (a
            different store: ids are per store).
    """
    lineage = manifest.get("lineage") or {}
    mlmd = lineage.get("mlmd") or {}
    model_id = mlmd.get("model_artifact_id")
    if not model_id:
        raise LineageError(f"the manifest of {version} records no model artifact id (lineage.mlmd.model_artifact_id)")
    found = store.get_artifacts_by_id([int(model_id)])
    if not found:
        raise LineageError(f"{where} has no artifact {model_id} (the model of {version})")
    model = found[0]
    if mlmd.get("model_uri") and os.path.normpath(model.uri) != os.path.normpath(mlmd["model_uri"]):
        raise LineageError(
            f"artifact {model_id} in {where} is {model.uri}, but the model of {version} is {mlmd['model_uri']}: "
            "this is not the store of the run that published it"
        )
    walker = _Walker(store)
    links: list[Link] = []
    seen: set[int] = set()
    frontier = [model]
    for _ in range(_MAX_HOPS):
        next_frontier = []
        for artifact in frontier:
            seen.add(artifact.id)
            execution_id, node, run_id = walker.producer(artifact.id)
            inputs = walker.examples_inputs(execution_id) if execution_id is not None else []
            if artifact.id == model.id:
                role = "model"
            else:  # examples made from other examples are transformed; the source ones are ExampleGen's
                role = "transformed examples" if inputs else "ExampleGen examples"
            links.append(
                Link(
                    role,
                    artifact.id,
                    artifact.uri,
                    producer=node,
                    execution_id=execution_id,
                    run_id=run_id,
                    spans=_spans(artifact),
                    version=custom_property(artifact, "version"),
                    input_fingerprint=custom_property(artifact, "input_fingerprint"),
                )
            )
            next_frontier += [a for a in inputs if a.id not in seen]
        if not next_frontier:
            break
        frontier = next_frontier
    return Chain(
        version, lineage.get("pipeline_name"), lineage.get("pipeline_run_id"), links, f"ML Metadata at {where}"
    )


def format_chain(chain: Chain, version_path: str) -> str:
    """The chain as printed by ``shelf-audit models lineage``: one arrow per hop, ids and uris."""
    lines = [f"version {chain.version}  {version_path}"]
    lines.append(f"  -> pipeline run {chain.pipeline_run_id or '-'}  (pipeline {chain.pipeline_name or '-'})")
    for link in chain.links:
        made = ""
        if link.producer or link.execution_id is not None:
            made = f", made by {link.producer or '?'} (execution {link.execution_id}"
            made += f", run {link.run_id})" if link.run_id and link.run_id != chain.pipeline_run_id else ")"
        data = ""
        if link.spans:
            version = "-" if link.version is None else link.version
            data = f", span {', '.join(str(s) for s in link.spans)}, version {version}"
            data += f", input {link.input_fingerprint or '-'}"
        ident = "-" if link.artifact_id is None else link.artifact_id
        lines.append(f"  -> {link.role}: artifact {ident}{made}{data}  {link.uri or '-'}")
    lines.append("  -> spans " + (", ".join(str(s) for s in chain.spans) or "- (none recorded)"))
    lines.append(f"(from {chain.source})")
    return "\n".join(lines)
