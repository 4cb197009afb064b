# One image for every cxrq service: workers (CPU or GPU), migrations, Flower and the CLI.
#
# Build arguments (docker-compose.yml passes them on from .env):
#   PYTHON_IMAGE   base image: python:3.11-slim, or any image with python3 and its venv module
#                  (scripts/compose/build_local_images.sh makes one from Debian packages)
#   PIP_OFFLINE=1  install from build/wheelhouse alone, no package index
#                  (scripts/compose/build_wheelhouse.sh fills it; README: "Air-gapped")
#   TORCH          the torch/torchvision requirement
ARG PYTHON_IMAGE=python:3.11-slim

# Stage 1: torch and every dependency in a virtual environment. Only that environment reaches
# the image, so the ~3 GB of wheels an offline build copies in never become one of its layers.
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/cxrq
# "buil[d]/wheelhouse" is a pattern, so an online build without that folder still works (with
# the classic builder and BuildKit alike); pyproject.toml, needed below, keeps the COPY from
# having zero sources.
COPY pyproject.toml buil[d]/wheelhouse /wheels/
ARG PIP_OFFLINE=0
ARG TORCH="torch==2.14.1 torchvision==0.29.1"
# torch first: the largest layer. The default Linux wheel carries CUDA, so the same image serves
# the GPU worker.
RUN if [ "$PIP_OFFLINE" = 1 ]; then set -- --no-index --find-links /wheels; fi; \
    /opt/cxrq/bin/pip install "$@" $TORCH
# The project's dependencies, read from pyproject.toml, but not the project: its code changes
# far more often than this multi-GB environment should be rebuilt.
RUN python3 -c 'import tomllib; p = tomllib.load(open("/wheels/pyproject.toml", "rb")); \
print("\n".join(p["project"]["dependencies"] + p["project"]["optional-dependencies"]["flower"] \
+ p["build-system"]["requires"]))' > /tmp/requirements.txt \
 && if [ "$PIP_OFFLINE" = 1 ]; then set -- --no-index --find-links /wheels; fi; \
    /opt/cxrq/bin/pip install "$@" -r /tmp/requirements.txt

# Stage 2: the environment, then the project on top (a small layer, the only one a code change
# rebuilds). Its build backend is already in the environment, so this needs no index either.
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/cxrq/bin:$PATH
COPY --from=deps /opt/cxrq /opt/cxrq
WORKDIR /app
COPY pyproject.toml README.md ./
COPY training ./training
COPY db ./db
COPY worker ./worker
COPY cli ./cli
COPY gateway ./gateway
RUN pip install --no-index --no-deps --no-build-isolation ".[flower]" && rm -rf build

RUN useradd --create-home --uid 1000 cxrq && mkdir -p /cache && chown cxrq /cache
USER cxrq
ENV CXRQ_CACHE_DIR=/cache
ENTRYPOINT ["cxrq"]
CMD ["--help"]
