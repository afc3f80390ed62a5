# Two commands set everything up on a fresh machine with Python 3.11:
#   make run   - create .venv, install the locked dependencies, run the main job, serve the API
#   make test  - create .venv if needed and run the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= var/demo
COMPANIES ?= 5000
YEARS ?= 3
AS_OF ?= 2026-06-30

.PHONY: run test lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

run: venv
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup simulate --companies $(COMPANIES) --years $(YEARS) --seed 7 --out $(DATA_DIR)/simulated --ingest
	# sort the stored records by company: a look-up then reads one row group, not every file
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup compact
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup records
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup score --as-of $(AS_OF)
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup train --truth $(DATA_DIR)/simulated/truth
	# a retrained model becomes champion only if it is better (exit 1 otherwise: not an error here)
	-CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup promote latest
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup tier --as-of $(AS_OF)
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup load --as-of $(AS_OF)
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup plan items import --preset national-default
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup plan inspectors demo
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup plan create --name "联合抽查（演示）" --departments samr,fire,emergency,ecology,health --snapshot $(AS_OF)
	# credit lists derived from the records (missing annual reports, heavy penalties, A-grade taxpayers)
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup lists derive --as-of $(AS_OF)
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup keys demo
	CREDSUP_DATA_DIR=$(DATA_DIR) $(BIN)/credsup serve

test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile -q tests notebooks --nbmake

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var
