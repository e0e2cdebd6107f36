"""The artifact store and the resolver's filter language.

Resolver executors (``outputArtifactQueries``) are answered from an
:class:`ArtifactStore` of every artifact the replay has produced: the filter
language is limited to the clauses TFX emits (:func:`compile_filter`), and the
latest match wins. (Vertex AI Pipelines behaviour: the open-source backend
refuses resolver tasks, see :func:`~support.kfp_replay.oss.kfp_oss_blockers`.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import UnsupportedSpec


def schema_title(artifact_type: Mapping[str, Any]) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    if "instanceSchema" in artifact_type:
        match = re.search(r"^title:\s*(\S+)\s*$", artifact_type["instanceSchema"], re.MULTILINE)
        if match:
            return match.group(1)
    raise UnsupportedSpec(f"artifact type without a schema title: {artifact_type}")


@dataclasses.dataclass
class StoredArtifact:
    """One artifact as ML Metadata would hold it after the launcher recorded it."""

    id: int
    name: str
    pipeline: str
    run_id: str
    task: str
    output_key: str
    schema_title: str
    type: dict[str, Any]
    uri: str
    metadata: dict[str, Any]
    state: str = "LIVE"

    def runtime(self) -> dict[str, Any]:
        """The RuntimeArtifact a downstream task receives (name = the store id, as the KFP driver passes it)."""
        return {"name": self.name, "uri": self.uri, "type": self.type, "metadata": copy.deepcopy(self.metadata)}


class ArtifactStore:
    """Every artifact the replay produced, with an integer id; persisted as JSON when given a path."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self.artifacts: list[StoredArtifact] = []
        if self.path and self.path.exists():
            self.artifacts = [StoredArtifact(**a) for a in json.loads(self.path.read_text())]

    def add(self, **fields: Any) -> StoredArtifact:
        next_id = max((a.id for a in self.artifacts), default=0) + 1
        artifact = StoredArtifact(id=next_id, name=str(next_id), **fields)
        self.artifacts.append(artifact)
        self.save()
        return artifact

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps([dataclasses.asdict(a) for a in self.artifacts], indent=1))

    def query(self, pipeline: str, filter_text: str) -> StoredArtifact | None:
        """The latest (highest id) artifact of ``pipeline``'s context matching ``filter_text``."""
        matches = compile_filter(filter_text)
        found = [a for a in self.artifacts if a.pipeline == pipeline and matches(a)]
        return max(found, key=lambda a: a.id) if found else None


def _split_and(text: str) -> list[str]:
    clauses, current, quoted, i = [], [], False, 0
    while i < len(text):
        if text[i] == '"':
            quoted = not quoted
        if not quoted and text.startswith(" AND ", i):
            clauses.append("".join(current).strip())
            current, i = [], i + 5
            continue
        current.append(text[i])
        i += 1
    if quoted:
        raise UnsupportedSpec(f"unbalanced quotes in filter {text!r}")
    clauses.append("".join(current).strip())
    return clauses


def _number_equals(value: Any, expected: str) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == float(expected)


# Exactly the clauses TFX's KubeflowV2 step_builder emits for resolver tasks.
_FILTER_CLAUSES: list[tuple[re.Pattern[str], Callable[[StoredArtifact, re.Match[str]], bool]]] = [
    (re.compile(r'schema_title="([^"]*)"'), lambda a, m: a.schema_title == m[1]),
    (re.compile(r"state=([A-Z_]+)"), lambda a, m: a.state == m[1]),
    (
        re.compile(r"metadata\.([A-Za-z0-9_]+)\.number_value=(-?\d+(?:\.\d+)?)"),
        lambda a, m: _number_equals(a.metadata.get(m[1]), m[2]),
    ),
    (re.compile(r'name="([^"]*)"'), lambda a, m: a.name == m[1]),
]


def compile_filter(text: str) -> Callable[[StoredArtifact], bool]:
    """A predicate for an ``outputArtifactQueries`` filter; raises on any clause TFX does not emit."""
    checks = []
    for clause in _split_and(text):
        for pattern, check in _FILTER_CLAUSES:
            match = pattern.fullmatch(clause)
            if match:
                checks.append((check, match))
                break
        else:
            raise UnsupportedSpec(
                f"resolver filter clause {clause!r} (in {text!r}) is not supported; supported: "
                'schema_title="...", state=STATE, metadata.KEY.number_value=N, name="..."'
            )
    return lambda artifact: all(check(artifact, match) for check, match in checks)
