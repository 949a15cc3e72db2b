# `make demo` and `make test` are the two entry points (see README.md).
# Both create .venv on first use and install ganplug with everything it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist): most tests wait on a subprocess (the CLI, Krita, Blender, torchrun), so
# one process keeps a 2-core machine about half idle. worksteal, not loadfile: it schedules by index, and
# schemathesis' fuzz cases share one test id, which loadfile would run only once.
PYTEST_WORKERS ?= -n 2 --dist worksteal

.PHONY: demo test core-smoke bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[eval,serve,media,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ganplug demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(PYTEST_WORKERS) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory core-smoke

# A plain `pip install ganplug` (no extras) in its own venv, .venv-core, running every core command at a
# tiny size; `test` installs every extra and cannot see a core command importing one (scripts/core_smoke.sh).
core-smoke:
	CORE_TORCH='$(word 1,$(TORCH))' bash scripts/core_smoke.sh

bench: $(STAMP)
	$(PY) -m pytest -q --benchmark-enable --benchmark-only benchmarks $(PYTEST_ARGS)
	$(VENV)/bin/ganplug bench --arch dcgan --size 64 --batch 1,64,256 --precision fp32,bf16
	$(VENV)/bin/ganplug bench --arch stylegan --size 256 --batch 1,64 --precision fp32,bf16

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .venv-core build *.egg-info
