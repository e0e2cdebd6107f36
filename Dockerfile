# The image every Kubeflow task runs (and, with Beam's boot, Dataflow's workers as sdk_container_image):
# Python 3.10, the dependencies from the hashed lock in the virtualenv /opt/venv, this project as a wheel.
# Build it with `make image IMAGE=NAME` (scripts/build_image.sh), which builds the wheel into dist/ first
# and passes the build arguments below; nothing else of the checkout goes into the image.
#
# BuildKit reads this file (the engine's own frontend: a `# syntax=` line would pull one from a registry)
# and builds only the stages the target needs, so no boot image is pulled unless BEAM_BOOT_IMAGE is set.
#
#   BASE_IMAGE       any Debian 12 image with CPython 3.10 in /usr/local; scripts/base_image.sh makes one
#                    from Debian's mirrors alone (make base-image)
#   BEAM_BOOT_IMAGE  empty: no Beam boot. Set (e.g. apache/beam_python3.10_sdk:2.59.0, the lock's Beam):
#                    its /opt/apache/beam is copied in and /opt/apache/beam/boot becomes the entrypoint
#   UV_VERSION       the uv that installs the lock (the Makefile's pin)
#
# A build secret `ca_bundle` (a PEM file) is trusted for the downloads from PyPI, for builders behind a
# TLS-intercepting proxy; it is mounted only while those RUN steps run and is never part of the image.
ARG BASE_IMAGE=python:3.10-slim-bookworm
ARG BEAM_BOOT_IMAGE=

FROM ${BEAM_BOOT_IMAGE:-scratch} AS beam-boot

# --- builder: a compiler for the lock's sdists (pyfarmhash, needed by TFT), uv, the lock in /opt/venv ---
FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION
RUN test -n "${UV_VERSION}" || { echo "error: build with --build-arg UV_VERSION=... (make image passes the Makefile's)" >&2; exit 1; } \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=secret,id=ca_bundle \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "uv==${UV_VERSION}"
# A venv of the base's interpreter (the final stage has the same one at the same path), with pip, which
# Beam's boot uses to install a job's extra packages. Every dependency is pinned by version and sha256,
# exactly as `make env` installs them; the uv cache lives in a build cache mount, never in a layer.
RUN python3 -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    if [ -f /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi \
 && UV_LINK_MODE=copy uv pip sync --python /opt/venv/bin/python --require-hashes --compile-bytecode --quiet \
      /tmp/requirements.lock
# Nothing a task runs: TensorFlow's C++ headers (for compiling custom ops) and the packages' own tests.
RUN rm -rf /opt/venv/lib/python3.10/site-packages/tensorflow/include \
 && find /opt/venv/lib/python3.10/site-packages -type d -name tests -prune -exec rm -rf {} +

# --- image: the base, the venv and the project; no compiler, no uv, no caches ---
FROM ${BASE_IMAGE} AS image
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
# The project itself: the wheel holds every module and data file the executors load (shelf_model run_fn
# and preprocessing_fn, the TFMA metric, the custom components, the curated schema), so no task needs a
# checkout. Installed with the builder's uv, mounted for this step only, and no dependency of its own.
RUN --mount=type=bind,from=builder,source=/usr/local/bin/uv,target=/usr/local/bin/uv \
    --mount=type=bind,source=dist,target=/tmp/dist \
    uv pip install --python /opt/venv/bin/python --no-deps --no-cache --compile-bytecode --quiet /tmp/dist/*.whl

# --- image-boot: the same, with Beam's SDK harness boot, so Dataflow can run it as its worker container.
# Kubeflow tasks set their own command and never use this entrypoint.
FROM image AS image-boot
COPY --from=beam-boot /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

FROM image${BEAM_BOOT_IMAGE:+-boot}
