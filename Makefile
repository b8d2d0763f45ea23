# One entry point for people and CI. `make test` works on a fresh machine: it creates .venv,
# installs torch (CPU build, pinned) and the project with every extra, starts Redis and the
# local Kafka-compatible broker when they are not already answering, and runs pytest.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: venv test demo lint peers clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[stream,train,dev]'
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/anomalybert demo

# Optional: the TSB-AD peers of `anomalybert evaluate --peers` (tsb-ad pins numpy<2, so without its deps).
peers: venv
	$(BIN)/pip install --quiet -e '.[peers]'
	$(BIN)/pip install --quiet --no-deps tsb-ad==1.5

lint: venv
	$(BIN)/ruff check model stream training evaluation tools tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
