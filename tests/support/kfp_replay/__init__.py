"""A stand-in for a Kubeflow Pipelines V2 backend: replay a compiled pipeline spec task by task.

:class:`Replay` runs each task of the spec (``kfp.Client().upload_pipeline``'s IR dict)
as the KFP V2 driver and launcher would: container tasks run their command exactly
as the spec writes it, with the ExecutorInput the driver builds, in a stand-in for
the image; ``preCacheCheck`` hooks and resolver queries behave as on Vertex AI
Pipelines; anything else is refused as :class:`UnsupportedSpec`. The modules:

- ``replay``: :class:`Replay`, :class:`TaskRecord`, :class:`RunResult` (how each kind of task is replayed);
- ``runner``: :class:`TaskRunner`, how a container task's command is executed:
  :class:`VenvRunner`, a subprocess in the clean image venv, or :class:`DockerRunner`,
  ``docker run`` of the real image;
- ``image_venv``: the wheel, the clean venv standing in for the image (:func:`cached_image`,
  once per pytest session) and :func:`shared`, a session-wide build shared by xdist workers;
- ``artifacts``: :class:`ArtifactStore` and the resolver's filter language (:func:`compile_filter`);
- ``values``: parameter values and placeholders as the driver and launcher convert them;
- ``oss``: :func:`kfp_oss_blockers`, what the open-source backend would refuse;
- ``errors``: :class:`ReplayError`, :class:`UnsupportedSpec`, :class:`TaskFailed`.
"""

from .artifacts import ArtifactStore, StoredArtifact, compile_filter
from .errors import ReplayError, TaskFailed, UnsupportedSpec
from .image_venv import REPO_ROOT, Image, build_wheel, cached_image, find_python310, find_uv, make_image_venv, shared
from .oss import kfp_oss_blockers
from .replay import Replay, RunResult, TaskRecord
from .runner import DockerRunner, TaskRunner, VenvRunner
from .values import placeholder_text

__all__ = [
    "REPO_ROOT",
    "ArtifactStore",
    "DockerRunner",
    "Image",
    "Replay",
    "ReplayError",
    "RunResult",
    "StoredArtifact",
    "TaskFailed",
    "TaskRecord",
    "TaskRunner",
    "UnsupportedSpec",
    "VenvRunner",
    "build_wheel",
    "cached_image",
    "compile_filter",
    "find_python310",
    "find_uv",
    "kfp_oss_blockers",
    "make_image_venv",
    "placeholder_text",
    "shared",
]
