# Two commands do all set-up on a fresh machine (see README):
#   make reproduce   # the main job: data, models, the notebook series on the default profile
#   make test        # the test suite (what CI runs)
#   make book        # the series as a static book in runs/book/html (offline; see README)
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= cpu
SWEEP   ?= $(if $(filter cpu,$(PROFILE)),cpu-quick,)
STAMP   := $(VENV)/.dsda-installed

.PHONY: reproduce test data browser book install clean-cache help

help:
	@echo "make reproduce [PROFILE=cpu|smoke|paper] [FROM_SCRATCH=1] [SWEEP=plan]  - data, models, the notebook series"
	@echo "make test                                 - run the test suite (unit tests, browser test, notebooks)"
	@echo "make book                                 - the series as a static book: runs/book/html/index.html"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,book]"
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m dsda prepare-data

# Debian's chromium and chromium-driver for the browser test (apt, as root); where that cannot run it says
# why and the browser test is skipped with that reason.
browser: $(STAMP)
	$(BIN)/python -m dsda prepare-browser

# Sphinx + MyST-NB, offline: the committed notebooks' outputs (nothing is executed), docs/, figures/.
book: $(STAMP)
	$(BIN)/python -m dsda book --out runs/book

# FROM_SCRATCH=1 ignores the shipped pretrained/ checkpoints and trains every model here.
# SWEEP=PLAN first runs that plan through the sweep engine into results/store/PLAN (resuming: with the committed
# store nothing runs); on PROFILE=cpu it defaults to cpu-quick, the plan notebook 06 reads. SWEEP= skips it.
reproduce: data
	$(if $(FROM_SCRATCH),DSDA_NO_PRETRAINED=1 ,)$(BIN)/python -m dsda reproduce --profile $(PROFILE)$(if $(SWEEP), --sweep $(SWEEP),)

# Unit tests, the smoke series through papermill, then nbval re-executes the committed notebooks
# (golden cpu outputs) and compares the claim cells.
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1500

# DSDA_OUTPUT_DIR: what nbval's re-executed notebooks write (results, figures) goes to runs/test-outputs, so
# running the tests never rewrites the committed results/ and figures/.
test: data browser
	DSDA_OUTPUT_DIR=$(CURDIR)/runs/test-outputs TQDM_DISABLE=1 MPLBACKEND=Agg \
		$(BIN)/python -m pytest -q tests $(NBVAL) notebooks

clean-cache:
	rm -rf checkpoints runs
