# CARE-SSc participant portal. `make run` sets everything up and serves; `make test` tests.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
# Participants seeded by the dashboard benchmark; 100,000 takes minutes on a small machine.
BENCH_DASHBOARD_SIZES ?= 1000,10000,100000
export FLASK_APP := wsgi.py
# Every package with its version and hashes: the portal's alone, and with the test extra.
LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
LOCK_TOOLS := $(VENV)/lock-tools
PIP_COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --all-build-deps --no-emit-index-url --no-emit-find-links

VENDOR := static/vendor/htmx.min.js static/vendor/simplewebauthn-browser.umd.min.js
# Pre-compressed copies that WhiteNoise serves to browsers sending Accept-Encoding: gzip.
COMPRESSED := $(VENV)/.static-compressed

.PHONY: run install setup test lint lock translations bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Exactly the locked packages, each checked against its hash, then the portal itself without
# resolving anything again. setuptools is locked too, hence no isolated build environment.
# pip check stops a dependency added to pyproject.toml but not to the locks: run `make lock`.
$(VENV)/.installed: $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

$(VENV)/.installed-test: $(TEST_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@ $(VENV)/.installed

$(LOCK_TOOLS)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet 'pip-tools~=7.6'

# After a change to pyproject.toml's dependencies: `make lock` pins what was added and keeps
# every other pin; `make lock UPGRADE=1` moves every package to its newest allowed release.
# Run it with the Python that CI uses (3.11): the locks are resolved for that version. The test
# lock is constrained by the runtime lock, so the packages both hold have the same versions.
lock: | $(LOCK_TOOLS)/bin/pip-compile
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --extra test -c $(LOCK) -o $(TEST_LOCK) pyproject.toml

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund $(if $(NPM_DEV),,--omit=dev)
	touch $@

node_modules/.dev-installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@ node_modules/.package-lock.json

static/vendor/htmx.min.js: node_modules/.package-lock.json
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js $@

static/vendor/simplewebauthn-browser.umd.min.js: node_modules/.package-lock.json
	mkdir -p static/vendor
	cp node_modules/@simplewebauthn/browser/dist/bundle/index.umd.min.js $@

$(COMPRESSED): $(VENDOR) $(shell find static -type f -not -name '*.gz' -not -name '*.br' -not -path 'static/vendor/*' ) | $(VENV)/.installed
	find static -name '*.gz' -delete
	$(BIN)/python -m whitenoise.compress --quiet --no-brotli static
	touch $@

translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po $(VENV)/.installed
	$(BIN)/pybabel compile -d translations -l $*

# France's few words over the Québec base (patient_portal/wording.py).
REGIONAL_MO := translations/regional/fr_FR/LC_MESSAGES/messages.mo
$(REGIONAL_MO): translations/regional/fr_FR/LC_MESSAGES/messages.po $(VENV)/.installed
	$(BIN)/pybabel compile -d translations/regional -l fr_FR

# What a server needs to run the portal: packages, front-end files, compiled translations.
install: $(VENV)/.installed $(VENDOR) $(COMPRESSED) translations/fr/LC_MESSAGES/messages.mo $(REGIONAL_MO)

# A development copy: the above, a migrated SQLite database and the demo people.
setup: install
	$(BIN)/flask db upgrade
	$(BIN)/flask demo load

# Passkeys are bound to the origin, so the printed links and the server must agree on the port.
run: export PORTAL_ORIGIN ?= http://localhost:$(PORT)
run: setup
	$(BIN)/flask demo links
	$(BIN)/flask run --host 127.0.0.1 --port $(PORT)

# Extract every marked string, merge it into the catalogues, curl French apostrophes and write
# France's override again (patient_portal/wording.py), and compile them.
translations: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o translations/messages.pot --no-location --sort-output .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete
	$(BIN)/python -m patient_portal.wording tidy
	$(BIN)/pybabel compile -d translations
	$(BIN)/pybabel compile -d translations/regional

test: $(VENV)/.installed-test node_modules/.dev-installed $(VENDOR) $(COMPRESSED) translations/fr/LC_MESSAGES/messages.mo $(REGIONAL_MO)
	@# Debian packages the browser and deployment tests drive: Chromium, nginx, certutil (NSS).
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v certutil >/dev/null || missing="$$missing libnss3-tools"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-test node_modules/.dev-installed $(VENDOR) translations/fr/LC_MESSAGES/messages.mo $(REGIONAL_MO)
	@# wrk, an event-loop load client in C that leaves the cores to the servers it measures.
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(BIN)/python -m bench
	$(BIN)/python -m bench.reminders
	$(BIN)/python -m bench.dashboard --sizes $(BENCH_DASHBOARD_SIZES)

clean:
	rm -rf $(VENV) node_modules static/vendor instance translations/*/LC_MESSAGES/*.mo
