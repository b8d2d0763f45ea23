# The stream worker: faust + aiokafka + redis + onnxruntime + numpy. No torch, no pandas.
# Build from the repository root: docker build -f deploy/worker.Dockerfile -t anomalybert-worker .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Pinned dependency set of the `stream` extra (deploy/requirements-stream.txt), installed first so that
# code changes do not invalidate this layer.
COPY deploy/requirements-stream.txt /tmp/requirements.txt
RUN pip install --no-deps -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY pyproject.toml README.md ./
# Only what the worker runs: the bundle contract (numpy) with the default bundle, and the worker. No model
# family code (torch), no training, evaluation, benchmark or tool code.
COPY model/*.py ./model/
COPY model/default ./model/default
COPY stream ./stream
RUN pip install --no-deps . && rm -rf /app/build

RUN useradd --uid 10001 --create-home worker && mkdir -p /registry && chown worker /registry
USER 10001
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/metrics', timeout=2)"
ENTRYPOINT ["python", "-m", "stream"]
CMD ["worker"]
