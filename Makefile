# Two commands do all set-up on a fresh machine (see README):
#   make reproduce   # the main job: data, models, the notebook series on the default profile
#   make test        # the test suite (what CI runs)
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
STAMP   := $(VENV)/.dsda-installed

.PHONY: reproduce test data install clean-cache help

help:
	@echo "make reproduce [PROFILE=cpu|smoke|paper]  - prepare data, train/load models, run the notebook series"
	@echo "make test                                 - run the test suite (unit tests, notebooks)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m dsda prepare-data

reproduce: data
	$(BIN)/python -m dsda train --profile $(PROFILE)

test: data
	TQDM_DISABLE=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q

clean-cache:
	rm -rf checkpoints runs
