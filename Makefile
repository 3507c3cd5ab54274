# greenlight.django — developer entry points.
#   make demo   set everything up and run the demo deploy
#   make test   set everything up and run every check
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/build
COLLECTION_LINK := $(BUILD)/collections/ansible_collections/greenlight/django
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1
export GREENLIGHT_BASE_IMAGE = $(shell cat $(BUILD)/base-image.tag 2>/dev/null)
export GREENLIGHT_BASE_IMAGE_TRIXIE = $(shell cat $(BUILD)/base-image-trixie.tag 2>/dev/null)
# ansible-core 2.19 imports cryptography's DSA support, which cryptography 51
# deprecates: every ansible command would print that warning on stderr. It is
# ansible-core's to fix, not a fault of this collection or of a deploy, so the
# tools started from here ignore exactly that message (Python's own filter
# syntax; nothing is imported to apply it). Users' runs are left as they are.
export PYTHONWARNINGS := ignore:DSA is deprecated:UserWarning


.PHONY: help setup host-packages venv lock link docker image lint sanity unit static functional molecule bench-smoke bench test demo build changelog clean

help:
	@echo "make demo   - set up and deploy the demo project into a local container"
	@echo "make test   - set up and run every check (lint, unit, functional, molecule)"
	@echo "make setup  - only the set-up: virtualenv, Docker daemon, base image"
	@echo "make lock   - re-resolve requirements/dev.lock after editing requirements/dev.txt"

setup: venv link image host-packages

host-packages:
	@bash scripts/ensure-host-packages.sh

# requirements/dev.txt names the tools; requirements/dev.lock pins every package
# they pull in, with hashes. `make lock` refreshes the lock after an edit of
# dev.txt; `make lint` fails when the two disagree.
$(BIN)/.installed: requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.lock
	touch $@

lock: venv
	$(BIN)/uv pip compile requirements/dev.txt --generate-hashes --upgrade --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --annotation-style line \
	  --custom-compile-command "make lock" -o requirements/dev.lock

venv: $(BIN)/.installed

link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn $(CURDIR) $(COLLECTION_LINK)

docker:
	@bash scripts/ensure-docker.sh

image: docker
	@mkdir -p $(BUILD)
	@bash scripts/base-image.sh bookworm > $(BUILD)/base-image.tag.new && mv $(BUILD)/base-image.tag.new $(BUILD)/base-image.tag
	@bash scripts/base-image.sh trixie > $(BUILD)/base-image-trixie.tag.new && mv $(BUILD)/base-image-trixie.tag.new $(BUILD)/base-image-trixie.tag
	@echo "base images: $$(cat $(BUILD)/base-image.tag) (Debian 12), $$(cat $(BUILD)/base-image-trixie.tag) (Debian 13)"

lint: venv link
	$(BIN)/python scripts/check_lock.py requirements/dev.txt requirements/dev.lock
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --offline
	$(BIN)/python scripts/check_argument_specs.py
	$(BIN)/python scripts/check_role_docs.py
	$(BIN)/antsibull-changelog lint
	$(BIN)/python scripts/check_changelog.py
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist . >/dev/null
	$(BIN)/python scripts/check_tarball.py $(BUILD)/dist/greenlight-django-*.tar.gz

sanity: venv
	bash scripts/sanity.sh


unit: venv link
	$(BIN)/pytest -q tests/unit

functional: setup
	$(BIN)/pytest -q tests/functional

# The parts of `make test` run side by side in JOBS lanes (default 2; JOBS=1 runs them one after the other),
# the heaviest first: scripts/lanes.sh. Each part has its own containers and log (build/lanes/<part>.log).
JOBS ?= 2
BENCH_NAMES := $(patsubst bench/bench_%.py,%,$(sort $(wildcard bench/bench_*.py)))
LANES = @JOBS=$(JOBS) BIN=$(BIN) bash scripts/lanes.sh

molecule: setup
	$(LANES) $(addprefix molecule:,$(SCENARIOS))

# The benchmarks' short runs: a smoke run writes no results.
bench-smoke: setup
	$(LANES) $(addprefix bench:,$(BENCH_NAMES))

# Every benchmark in full (long: about an hour); each rewrites its own section of bench/RESULTS.md.
bench: setup
	@set -e; for b in bench/bench_*.py; do [ -e "$$b" ] || continue; echo "==> $$b"; $(BIN)/python $$b --update-results bench/RESULTS.md; done

# Every check: the static ones (lint, sanity, unit: one after the other), the functional tests, every molecule
# scenario and the benchmarks' short runs, as parts of one queue in JOBS lanes.
test: setup
	$(LANES) static functional $(addprefix molecule:,$(SCENARIOS)) $(addprefix bench:,$(BENCH_NAMES))
	@echo "make test: all checks passed"

static:
	@$(MAKE) --no-print-directory -j1 lint sanity unit

demo: setup
	@bash scripts/demo.sh

# Fold the changelog fragments into the release named in galaxy.yml and rebuild CHANGELOG.rst.
changelog: venv
	$(BIN)/antsibull-changelog release --update-existing

build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist .

clean:
	-docker ps -aq --filter name=greenlight- | xargs -r docker rm -f
	rm -rf $(BUILD)
