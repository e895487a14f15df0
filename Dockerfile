# syntax=docker/dockerfile:1
# ecs-reinstall-operator container image.
#
#   docker build -t ecs-reinstall-operator:0.1.0 .
#   make image    (podman, as root, no registry: a Debian stand-in for the base; see docs/image.md)
#
# Stage 1 builds the project's wheel; stage 2 installs only that wheel (and its runtime dependencies from the
# package index) into a clean slim Python, so no compiler, build backend or source tree reaches the final image.
# The image runs as uid 10001 and never writes outside /tmp, so it works with readOnlyRootFilesystem: true and an
# emptyDir mounted at /tmp (what the Helm chart and the kustomize base do). tests/image builds and runs it.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore): metadata first, then the sources.
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-deps . -w /dist

FROM ${PYTHON_IMAGE}
# No .pyc written at run time (the root filesystem is read-only), logs unbuffered, HOME on the writable /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=builder /dist/ /tmp/wheels/
# pip byte-compiles the installed modules here, at build time, so the read-only image never needs to (the
# bytecode saves the operator about 2 s of compiling at every start). Then only what the running operator uses
# stays: the wheel also carries the two development emulators (ecs_emulator, kube_emulator, and their commands;
# their own dependencies are extras the image never installs), and the kubernetes client ships an asyncio copy of
# itself (kubernetes.aio, 66 MB with its bytecode) that the operator never imports: both are removed.
RUN python -m pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && site=$(python -c 'import kubernetes, pathlib; print(pathlib.Path(kubernetes.__file__).parents[1])') \
    && rm -rf "$site/ecs_emulator" "$site/kube_emulator" "$site/kubernetes/aio" \
       "$(command -v ecs-emulator)" "$(command -v kube-emulator)" \
    && groupadd --system --gid 10001 ecs-reinstall \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --no-log-init \
       --shell /usr/sbin/nologin ecs-reinstall
# Labels last: a new version or revision re-runs nothing above.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ecs-reinstall-operator" \
      org.opencontainers.image.description="Kubernetes operator that reinstalls the OS of Huawei Cloud ECS servers from EcsReinstall resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# Numeric user so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# 8080: Prometheus metrics (/metrics); 8081: liveness (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["ecs-reinstall-operator"]
CMD ["run"]
