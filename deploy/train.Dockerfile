# The trainer / retrainer: everything the worker has plus torch (CPU build), pandas and onnx.
# Build from the repository root: docker build -f deploy/train.Dockerfile -t anomalybert-train .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY deploy/requirements-stream.txt deploy/requirements-train.txt /tmp/
RUN pip install --no-deps -r /tmp/requirements-stream.txt -r /tmp/requirements-train.txt && rm /tmp/*.txt

COPY pyproject.toml README.md ./
COPY model ./model
COPY stream ./stream
COPY training ./training
COPY evaluation ./evaluation
COPY tools ./tools
RUN pip install --no-deps . && rm -rf /app/build

RUN useradd --uid 10001 --create-home trainer && mkdir -p /registry /data && chown trainer /registry /data
USER 10001
ENTRYPOINT ["anomalybert"]
CMD ["--help"]
