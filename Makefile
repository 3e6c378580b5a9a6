# cloudpanel: `make run` serves the whole product, `make test` runs every test.
SHELL := /bin/bash
# Debian's own Python: the service user `make run` drops to must be able to run the venv's
# interpreter, and one under /root (pyenv, ...) is out of its reach.
PY ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The import contracts in pyproject.toml ([tool.importlinter]); no cache dir in the tree.
LINT_IMPORTS := $(BIN)/lint-imports --no-cache --no-logo

ifeq ($(CI),true)
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
endif

.PHONY: run dev test bench lab lab-stop lint fmt guest-image system-run system-test services services-test setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=25.1"
	$(BIN)/pip install -q -e . --group dev
	touch $(STAMP)

system-run:
	scripts/install-system.sh run

system-test:
	scripts/install-system.sh test

services:
	scripts/start-services.sh

# The same plus the PostgreSQL the tests use (127.0.0.1:5432).
services-test:
	scripts/start-services.sh test

# As root (or through sudo) the panel runs as the unprivileged system user $CLOUDPANEL_USER
# (default cloudpanel), created once; see scripts/launch.sh.
setup: system-run $(STAMP) services
	scripts/launch.sh setup

run: system-run $(STAMP) services
	scripts/launch.sh run

# The same with Django's debug mode (tracebacks in the browser): never in production.
dev: export DEBUG = true
dev: run

# A Debian 12 cloud image (cloud-init, sshd, qemu-guest-agent) built from this machine's apt
# sources, cached in /var/cache/cloudpanel/guest-images (a few minutes once, then instant);
# prints its path. The real-OS tests boot it; README "Images" says how to import it.
guest-image:
	scripts/install-system.sh image
	scripts/build-guest-image.sh

# Tests use their own Redis database, so a running `make run` worker never takes their jobs.
test: export REDIS_URL ?= redis://127.0.0.1:6379/15
test: system-test $(STAMP) services-test guest-image
	$(BIN)/ruff check .
	$(LINT_IMPORTS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: system-test $(STAMP) services
	$(BIN)/python -m bench

lab: system-run $(STAMP)
	$(BIN)/python -m lab start --hosts 2

lab-stop:
	$(BIN)/python -m lab stop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(LINT_IMPORTS)

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var/staticfiles
