# The image every Kubeflow task runs (and Dataflow's workers, as sdk_container_image):
# Python 3.10, the dependencies from the hashed lock, and this project as a wheel.
# Build and push it with `make image IMAGE=registry/shelf-audit:TAG`, which builds
# the wheel into dist/ first. Nothing else of the checkout goes into the image.
ARG PYTHON_IMAGE=python:3.10-slim-bookworm
ARG BEAM_IMAGE=apache/beam_python3.10_sdk:2.59.0

FROM ${BEAM_IMAGE} AS beam

FROM ${PYTHON_IMAGE}
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every dependency pinned by version and sha256, exactly as `make env` installs them.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir "uv==0.13.9" \
 && uv pip sync --system --require-hashes --no-cache --compile-bytecode /tmp/requirements.lock \
 && rm /tmp/requirements.lock

# The project itself: the wheel holds every module and data file the executors load
# (shelf_model run_fn and preprocessing_fn, the TFMA metric, the custom components,
# the curated schema), so no task needs a checkout.
COPY dist/*.whl /tmp/wheels/
RUN uv pip install --system --no-deps --no-cache --compile-bytecode /tmp/wheels/*.whl && rm -rf /tmp/wheels

# Beam's SDK harness boot, so Dataflow can run this image as its worker container.
# Kubeflow tasks set their own command and never use this entrypoint.
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
