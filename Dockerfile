# FairLoss scoring service image.
#
# CPU (default):  docker build -t fairloss-service .
# CUDA variant:   docker build -t fairloss-service:cu128 \
#                   --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#                   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# A base without python3 (like the CUDA ones) gets python3 + venv from apt in the first stage.
# Offline/local wheels: --build-arg PIP_FIND_LINKS=/opt/wheels --build-arg TORCH_INDEX_URL=
# (empty TORCH_INDEX_URL: torch resolves like any other package, find-links included).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- python: the base plus a python3 that can make venvs (a no-op on python bases) ---
FROM ${BASE_IMAGE} AS python
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
             python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# --- deps: a venv in /opt/venv with torch and the runtime dependencies, no pip ---
FROM python AS deps
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and alone: the big, rarely changing layer.
RUN pip install ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"
# Then the service's dependencies: the core's and the `service` extra, read from pyproject.toml
# (neither the client's nor the dev extras). Headers, CMake files,
# C++ test binaries and static libraries only serve extension builds: dropped, with pip.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(*p['dependencies'], *p['optional-dependencies']['service'], sep='\n')" > requirements.txt \
    && pip install ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} -r requirements.txt \
    && pip uninstall -y pip \
    && cd /opt/venv/lib/python3*/site-packages/torch \
    && rm -rf include share/cmake bin/test_* bin/*Test lib/libtorchbind_test.so \
    && find /opt/venv -name '*.a' -delete

# --- app: the project installed on top; its files alone are gathered under /app-layer ---
FROM deps AS app
COPY README.md ./
COPY fairloss ./fairloss
COPY fairloss_client ./fairloss_client
COPY fairloss_wire ./fairloss_wire
COPY service ./service
RUN python -m ensurepip --default-pip >/dev/null \
    && { pip install --no-deps --no-build-isolation . 2>/dev/null || pip install --no-deps . ; } \
    && cd / && python -c "import importlib.metadata as md, os, shutil; \
[shutil.copy2(f.locate(), os.makedirs(os.path.dirname(d := '/app-layer' + os.path.abspath(f.locate())), exist_ok=True) or d) \
 for f in md.files('fairloss-service') if os.path.isfile(f.locate())]" \
    && python -c "import fairloss, service, torch; print('torch', torch.__version__)"

# --- runtime ---
FROM python AS runtime
RUN groupadd --gid 10001 fairloss \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
         --shell /usr/sbin/nologin fairloss
# Two layers: the dependencies (cached while pyproject.toml is unchanged), then the project.
COPY --from=deps /opt/venv /opt/venv
COPY --from=app /app-layer/ /
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    FAIRLOSS_HOST=0.0.0.0 \
    FAIRLOSS_PORT=8000
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# Liveness through the stdlib (no curl in the image); follows FAIRLOSS_PORT if it is changed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FAIRLOSS_PORT', '8000'), timeout=4)"]
# Metadata last, so that a new revision or date leaves the layers above cached.
ARG BASE_IMAGE
ARG VERSION=0.2.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="fairloss-service" \
      org.opencontainers.image.description="FairLoss (cross-entropy plus a smooth argmax penalty) HTTP scoring service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Exec form: python is PID 1 and gets SIGTERM itself. It runs FAIRLOSS_WORKERS worker processes
# (default auto: one per CPU the container may use, its cpuset and CPU quota included); on SIGTERM
# it stops listening, lets every worker finish the requests it has, reaps them and exits 0.
CMD ["python", "-m", "service"]
