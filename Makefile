# gap-spark: the two README commands, plus packaging and benchmarks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint install package bench bench-full bench-ingest bench-calibration clean

$(STAMP): setup.py constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "gap-spark needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,mlflow,connect]'
	@touch $@

install: $(STAMP)

## The main job on generated data (local[*]); prints where the report is.
demo: $(STAMP)
	$(BIN)/gap-spark pipeline --config conf/demo.yaml

## The quality gate (ruff, mypy) and the whole test suite: what CI runs.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

## ruff (rules in ruff.toml) and mypy (mypy.ini): the gate `make test` starts with.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Everything but the slow end-to-end and cluster tests.
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow and not cluster"

## dist/gap_spark.zip for spark-submit --py-files
package: $(STAMP)
	$(BIN)/gap-spark package --out dist/gap_spark.zip

## gap-spark's stages beside the prototype's approach at 10% (full val and v2); see README "Benchmarks".
bench: $(STAMP)
	$(BIN)/python -m benchmarks.harness --scale 0.1 --set synth.val_rows=50000 --set synth.v2_rows=10000 \
	    --work data/bench/10pct

## The full 1,281,167 x 1024 x 1000 run on one machine (hours on 2 cores).
bench-full: $(STAMP)
	$(BIN)/python -m benchmarks.harness --scale 1.0 --config conf/full.yaml --work data/bench/full --skip-baselines

bench-ingest: $(STAMP)
	$(BIN)/python -m benchmarks.bench_ingest --rows 20000 --repeats 3

bench-calibration: $(STAMP)
	$(BIN)/python -m benchmarks.calibrate_synth --scale 0.1

clean:
	rm -rf dist build *.egg-info data/demo
