# The two commands of the README: `make run` (the service, embedded database) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# This machine keeps a CPU build of torch here; elsewhere pip ignores a missing folder.
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
INSTALLED := $(VENV)/.installed
# The browser tests drive Debian's Chromium (README, "Browser tests"); `make install` tries once per .venv to
# install it where apt-get may run (root, or sudo without a password), and the tests skip without it.
CHROMIUM := /usr/bin/chromium
CHROMIUM_TRIED := $(VENV)/.chromium-tried
CHROMIUM_LOG := $(VENV)/chromium-install.log
APT_TIMEOUT ?= 600

.PHONY: install run test lint typecheck bench bench-load clean-data

# llama.cpp (the tests' real model server) is built for a portable x86-64 with AVX2, not for the build machine's
# CPU: its default, -march=native, compiled AMX tile instructions on a CPU that reports AMX, and the server
# died of "invalid opcode" on its first request where the virtual machine does not enable AMX. pip's wheel
# cache does not know build flags and would hand back a native wheel, so the portable one is built once
# without it into a folder named by the flags, which the install then finds.
LLAMA_REQUIREMENT := $(shell grep -m1 '^llama-cpp-python' requirements-dev.txt)
LLAMA_VERSION := $(lastword $(subst ==, ,$(LLAMA_REQUIREMENT)))
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS := $(HOME)/.cache/autotagger/llama-wheels/portable-avx2
LLAMA_FLAGS := $(if $(filter x86_64,$(shell uname -m)),--find-links $(LLAMA_WHEELS),)

$(INSTALLED): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ "$$(uname -m)" = x86_64 ] && ! ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "Building llama-cpp-python $(LLAMA_VERSION) for a portable x86-64 (once, about five minutes)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python -w $(LLAMA_WHEELS) "llama-cpp-python==$(LLAMA_VERSION)"; \
	fi
	$(BIN)/pip install --quiet $(PIP_FLAGS) $(LLAMA_FLAGS) -r requirements-dev.txt
	touch $(INSTALLED)

# Never fails the install: a failed or timed-out apt-get leaves a warning, and `rm $(CHROMIUM_TRIED)` tries again.
$(CHROMIUM_TRIED):
	@mkdir -p $(VENV)
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then as_root=""; elif sudo -n true 2>/dev/null; then as_root="sudo -n"; else exit 0; fi; \
	  echo "Installing Debian's chromium for the browser tests (at most $$(( 2 * $(APT_TIMEOUT) )) s)"; \
	  apt="$$as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=60"; \
	  { timeout $(APT_TIMEOUT) $$apt update \
	    && timeout $(APT_TIMEOUT) $$apt install -y --no-install-recommends chromium fonts-liberation; \
	  } >$(CHROMIUM_LOG) 2>&1 \
	    || echo "WARNING: could not install chromium (see $(CHROMIUM_LOG)); the browser tests will skip."; \
	fi
	@touch $@

install: $(INSTALLED) $(CHROMIUM_TRIED)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py taxonomy_import --default --if-empty --embed-now
	$(BIN)/python manage.py load_starter_set
	$(BIN)/python manage.py tags_embed
	$(BIN)/python manage.py load_demo_recipes
	$(BIN)/python manage.py ensure_admin
	@# The fast mode's model takes ~3 minutes of both cores to distil, so a first start does not wait for it
	@# unless asked; once distilled, embedding_distill returns at once.
	@if [ "$(FAST_MODE)" = 1 ]; then $(BIN)/python manage.py embedding_distill; \
	else echo "Fast mode: make run FAST_MODE=1 distils its model once (~3 min), or manage.py embedding_distill"; fi
	@echo "AutoTagger on http://127.0.0.1:$${AUTOTAGGER_PORT:-8000}/  (Ctrl-C stops web, worker and beat)"
	$(BIN)/honcho start

test: install
	DJANGO_SETTINGS_MODULE=autotagger.settings.test $(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy .

bench: install
	$(BIN)/python bench/tagging_throughput.py

bench-load: install
	$(BIN)/python bench/load.py

clean-data:
	rm -rf .data
