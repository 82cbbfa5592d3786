# Two commands for a newcomer: `make submit` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Rules call the `benchpipe` command line, so the venv must come first on PATH.
RUN := PATH="$(BIN):$$PATH"

.PHONY: venv submit dry-run test lint lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

submit: venv
	$(RUN) snakemake --cores all submit

dry-run: venv
	$(RUN) snakemake -n submit

test: venv
	$(RUN) python -m pytest

lint: venv
	$(RUN) snakemake --lint

# Re-pin after changing pyproject.toml's dependencies.
lock: venv
	{ echo "# Exact versions for .venv (make venv). Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^benchpipe'; } > requirements.lock

clean:
	rm -rf data runs tables logs .snakemake
