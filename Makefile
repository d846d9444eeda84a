# Two commands set odradek up on a fresh machine (Linux, Python 3.11+, a C compiler):
#   make run    create .venv, install odradek, run the broker on the embedded default config
#   make test   create .venv, install odradek and the test tools, lint, run the whole suite
#   make lint   ruff on everything, mypy on MYPY_FILES (configuration: pyproject.toml)
#   make interop-tools   the non-Python Kafka clients the interop tests run (kcat, kafkajs, Kafka's Java tools)
#   make perf-compare   issue 11's figures as ratios to the previous version (BASE=rev), Redis and memcpy
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
DATA   ?= ./data
SOURCES := setup.py pyproject.toml $(shell find client daemon -name '*.py' -o -name '*.c' -o -name '*.h' -o -name '*.md' 2>/dev/null)

# The lint tools, pinned so that every clone lints alike.
LINT_TOOLS := ruff==0.8.4 mypy==1.13.0
# The modules mypy checks: the sans-IO cores. Add a module (or a folder) here once it passes.
MYPY_FILES := client/protocol/_connection.py client/protocol/_schema.py client/protocol/_framing.py \
              client/protocol/consumer_protocol.py daemon/broker/groups daemon/broker/txn \
              client/group_membership.py client/group_offsets.py client/group_actions.py client/txn_manager.py

.PHONY: run test lint install interop-tools perf perf-deps perf-compare clean

# The venv and its tools: setuptools and cffi are installed first so that the package
# builds without build isolation (no second download of them for every install).
$(VENV)/.tools:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "odradek needs Python 3.11+"' \
	  || { echo "odradek needs Python 3.11 or newer: make PYTHON=python3.12 ..." >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'" >&2; exit 1; }
	$(PIP) install 'setuptools>=65' wheel 'cffi>=1.15'
	@touch $@

# odradek itself: reinstalled whenever a source file changes.
$(VENV)/.installed: $(VENV)/.tools $(SOURCES)
	$(PIP) install --no-build-isolation '.[test]'
	@rm -rf build
	@touch $@

install: $(VENV)/.installed

$(VENV)/.lint-tools: $(VENV)/.tools Makefile
	$(PIP) install $(LINT_TOOLS)
	@touch $@

lint: $(VENV)/.lint-tools
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/mypy $(MYPY_FILES)

run: install
	$(VENV)/bin/odradek serve --data-dir $(DATA)

test: lint install interop-tools
	$(PY) -m pytest -q --durations=25 tests

# Kafka clients that are not Python packages, for tests/interop: kcat (Debian's package),
# kafkajs (npm, pinned by tests/interop/js/package-lock.json) and Apache Kafka's Java client
# and CLI tools, Kafka Streams and Connect (Maven Central, pinned by tests/interop/java/pom.xml,
# with Connect's FileStream plugin in a folder of its own; needs a JDK 17+ and mvn).
INTEROP := .cache/interop
$(INTEROP)/.tools: tests/interop/java/pom.xml tests/interop/js/package-lock.json
	@command -v kcat >/dev/null || { apt-get update -q && apt-get install -y -q kcat; } \
	  || { echo "kcat is missing: install Debian's kcat package (apt-get install kcat)" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ with npm" >&2; exit 1; }
	npm ci --silent --no-audit --no-fund --prefix tests/interop/js
	@command -v mvn >/dev/null && command -v java >/dev/null \
	  || { echo "java or mvn is missing: install a JDK 17+ and Maven" >&2; exit 1; }
	rm -rf $(INTEROP)/java $(INTEROP)/connect-plugins
	mvn -B -q -f tests/interop/java/pom.xml dependency:copy-dependencies dependency:copy@connect-file-plugin \
	  -DoutputDirectory=$(abspath $(INTEROP))/java -Dinterop.dir=$(abspath $(INTEROP))
	@touch $@

interop-tools: $(INTEROP)/.tools

perf: install
	$(PY) perf/log_append.py

# What perf/redis_streams.py and perf/compare.py need besides odradek: redis-server (the
# Debian package; we run as root) and redis-py with its hiredis parser in the venv.
# `make test` does not need them.
perf-deps: $(VENV)/.tools
	@command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
	$(PIP) install 'redis[hiredis]>=5'

# This odradek against BASE (a git revision, built once under /tmp/odradek-perf-cache),
# Redis Streams and memcpy: medians of RUNS interleaved runs, one table (perf/compare.py).
BASE ?= f806826
RUNS ?= 3
perf-compare: install perf-deps
	$(PY) perf/compare.py --base $(BASE) --runs $(RUNS)

clean:
	rm -rf $(VENV) .cache tests/interop/js/node_modules build *.egg-info .pytest_cache .hypothesis .ruff_cache .mypy_cache daemon/c_ext/_native.*.so
