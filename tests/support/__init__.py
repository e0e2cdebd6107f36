"""What the tests share besides fixtures: helper modules imported as ``support.<name>``.

Fixtures stay in ``tests/conftest.py``; here live the plain functions and
classes several test modules use:

- ``tiny``: the tiny pipeline config of the end-to-end tiers, ``shelf-audit`` run in a subprocess;
- ``cli_helpers``: a child script's ``run`` as a ``shelf-audit`` subcommand of the real console script;
- ``span_helpers``: tiny spans with a chosen device, label and lighting mix;
- ``tflite_helpers``: the tiny brightness classifier, Transform-shaped examples and TFX artifacts;
- ``mediapipe_helpers``: ``scripts/tasks_classify.py`` in the MediaPipe environment;
- ``browser_check``: a page opened in headless Chromium over the DevTools protocol;
- ``refusals``: the message of the error a refused call raises;
- ``kfp_replay``: a stand-in Kubeflow Pipelines V2 backend that replays a compiled spec;
- ``image_helpers``: the project's image, built once per content, and commands run in it;
- ``bucket_race``: publishers, rollbacks and kills of the bucket's concurrency tests, and their invariants;
- ``stores``: the ``stores`` tier's local GCS emulator and S3 server on free ports.

Tests import them with ``tests/`` on ``sys.path`` (pytest's rootdir-relative
import of test modules), e.g. ``from support import span_helpers``.
"""
