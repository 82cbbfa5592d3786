# Two commands for a newcomer: `make submit` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# Rules call the `benchpipe` command line, so the venv must come first on PATH.
RUN := PATH="$(BIN):$$PATH"
# The lock tool, pinned: it resolves for the images' platform, not only this machine's.
UV := uv==0.13.9
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" --quiet
# Images install from wheels only (no compiler in them), so their locks must not need an sdist
# (the host's may: snakemake's connection-pool has none).
IMAGE_LOCK_FLAGS := $(LOCK_FLAGS) --only-binary :all: -c requirements.lock
BASE_IMAGE := benchpipe/debian:bookworm
# The test tiers (README, Development): `--tier fast` (tests/conftest.py) leaves out what needs an
# engine or a cluster and what takes minutes; `test-all` runs everything.
# What must not run beside another test: LoadGen's verdicts (the reduced workflow run's too), engines' and SLURM's
# time limits, kills timed against a live run. A serial pass after the parallel one.
ALONE := timing or engine or slurm or kill
WORKERS ?= 2
# The slowest tests' times in every log, so the CI budget can be read off a run.
PYTEST := $(RUN) python -m pytest --durations=25
# Not --dist loadgroup: xdist 3.8 marks a group in the node id the way pytest 9.2 no longer reads,
# so groups are ignored. The workflow run behind `submitted` is shared by a lock instead (conftest).
PARALLEL := $(PYTEST) -n $(WORKERS)
SERIAL := $(PYTEST) -p no:xdist

.PHONY: venv submit submit-docker base-image dry-run test test-all lint lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

submit: venv
	$(RUN) snakemake --cores all submit

# The same suite in the tensorflow-cpu image through Docker (dockerd must be running).
submit-docker: venv base-image
	$(RUN) snakemake --cores all submit --configfile config/docker.yaml

# The base image every image builds on, made from Debian's packages (no registry needed).
base-image:
	@docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 || containers/base/build.sh docker

dry-run: venv
	$(RUN) snakemake -n submit

# The fast tier: unit tests and one reduced end-to-end run on local-cpu, in minutes.
test: venv
	$(PARALLEL) --tier fast -m "not ($(ALONE))"
	$(SERIAL) --tier fast -m "$(ALONE)"

# Everything: engines, SLURM, ResNet, kill-and-resume, the benches' smokes (.ci/run provisions them).
test-all: venv
	$(PARALLEL) --tier all -m "not ($(ALONE))"
	$(SERIAL) --tier all -m "$(ALONE)"

# The rules, and the floor plan (pyproject.toml's import contract, docs/architecture.md).
lint: venv
	$(RUN) snakemake --lint
	PYTHONPATH=workflow $(BIN)/lint-imports

# Re-pin after changing pyproject.toml's dependencies. Existing pins are kept where they
# still fit; each image's lock is constrained by the host's, so versions agree everywhere.
lock: venv
	$(BIN)/python -m pip install --quiet "$(UV)"
	$(BIN)/uv pip compile pyproject.toml --extra cpu --extra workflow --extra report --extra test $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra cpu $(IMAGE_LOCK_FLAGS) -o containers/tensorflow-cpu/requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra cuda $(IMAGE_LOCK_FLAGS) -o containers/tensorflow-cuda/requirements.lock

clean:
	rm -rf data runs tables published logs images wheelhouse .snakemake
