# Two commands for users: `make repro` (full reproduction) and `make test` (the test suite).
# Both create .venv from the pinned versions in requirements.lock when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: repro test venv clean-venv gpu-wheels gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mimic-bench needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc pull data.dvc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo
	@echo "Done. Results:"
	@echo "  metrics:   $$(ls reports/metrics/*.json | tr '\n' ' ')  (see: $(BIN)/dvc metrics show)"
	@echo "  artifacts: $$(ls -d data/*/ | grep -v data/raw/ | tr '\n' ' ')  (DVC cache, not in git)"

# One worker per core, tests handed out one by one, the heaviest first (tests/conftest.py): measured on 2 cores,
# about 1.2-1.3x the serial suite's speed (the suite is compile-bound, and two compiles share two cores).
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist load

# The device check (issue 17): `make gpu-wheels` here fetches the packages the lent GPU machine lacks into .whl/
# (git-ignored; it has no network), and `make gpu-check` there (or on any CUDA machine with .venv) runs
# bench/gpu_check.sh: throughput at 1,024-16,384 envs and paper-profile training, inside 9 minutes.
gpu-wheels:
	bash bench/gpu_wheels.sh .whl

gpu-check:
	bash bench/gpu_check.sh

clean-venv:
	rm -rf $(VENV)
