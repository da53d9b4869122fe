# Two commands do all set-up on a fresh machine (see README):
#   make reproduce   # the main job: data, models, the notebook series on the default profile
#   make test        # the test suite (what CI runs)
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
SWEEP   ?=
STAMP   := $(VENV)/.dsda-installed

.PHONY: reproduce test data install clean-cache help

help:
	@echo "make reproduce [PROFILE=cpu|smoke|paper] [FROM_SCRATCH=1] [SWEEP=cpu-quick]  - data, models, the notebook series"
	@echo "make test                                 - run the test suite (unit tests, notebooks)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m dsda prepare-data

# FROM_SCRATCH=1 ignores the shipped pretrained/ checkpoints and trains every model here.
# SWEEP=cpu-quick first runs that plan through the sweep engine into results/store/ (resuming).
reproduce: data
	$(if $(FROM_SCRATCH),DSDA_NO_PRETRAINED=1 ,)$(BIN)/python -m dsda reproduce --profile $(PROFILE)$(if $(SWEEP), --sweep $(SWEEP),)

# Unit tests, the smoke series through papermill, then nbval re-executes the committed notebooks
# (golden cpu outputs) and compares the claim cells.
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1500

# DSDA_OUTPUT_DIR: what nbval's re-executed notebooks write (results, figures) goes to runs/test-outputs, so
# running the tests never rewrites the committed results/ and figures/.
test: data
	DSDA_OUTPUT_DIR=$(CURDIR)/runs/test-outputs TQDM_DISABLE=1 MPLBACKEND=Agg \
		$(BIN)/python -m pytest -q tests $(NBVAL) notebooks

clean-cache:
	rm -rf checkpoints runs
