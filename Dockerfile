# One image for every cxrq service: workers (CPU or GPU), migrations, Flower and the CLI.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# torch first: the largest layer, rebuilt only when the pin changes. The default Linux wheel
# carries CUDA, so the same image serves the GPU worker.
ARG TORCH="torch==2.14.1 torchvision==0.29.1"
RUN pip install $TORCH

COPY pyproject.toml README.md ./
COPY training ./training
COPY db ./db
COPY worker ./worker
COPY cli ./cli
RUN pip install ".[flower]"

RUN useradd --create-home --uid 1000 cxrq && mkdir -p /cache && chown cxrq /cache
USER cxrq
ENV CXRQ_CACHE_DIR=/cache
ENTRYPOINT ["cxrq"]
CMD ["--help"]
