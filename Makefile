# batchfiles: `make demo` runs the demo job, `make test` every test, `make bench` the benchmarks.
# Each target installs what it needs: a virtualenv in .venv with the package built from source
# (release build of the Rust extension, installed as a wheel) and Azurite from package-lock.json.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SOURCES := Cargo.toml Cargo.lock pyproject.toml README.md $(shell find rust python -type f \( -name '*.rs' -o -name '*.py' -o -name '*.pyi' -o -path '*/static/*' \))

.PHONY: all test test-rust test-python lint demo view-demo bench clean chromium
all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Build the wheel exactly as users get it, and install it with the test and bench tools.
$(VENV)/.installed: $(PY) $(SOURCES)
	$(PIP) install "maturin>=1.9,<2"
	rm -rf dist
	$(VENV)/bin/maturin build --release --quiet --out dist
	$(PIP) install --force-reinstall --no-deps dist/batchfiles-*.whl
	$(PIP) install "$$(ls dist/batchfiles-*.whl)[test,bench,view]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

test: test-rust lint test-python

test-rust:
	cargo test --quiet

lint: $(VENV)/.installed
	cargo fmt --check
	cargo clippy --quiet --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches demo
	$(VENV)/bin/ruff format --check python tests benches demo

test-python: $(VENV)/.installed node_modules/.installed chromium
	$(VENV)/bin/pytest

# The browser tests of `batchfiles view` drive Debian's chromium with Playwright (whose own browser download
# needs the internet): installed with apt when missing, which needs root.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "make: /usr/bin/chromium is missing and the browser tests need it: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi; }

demo: $(VENV)/.installed node_modules/.installed
	$(PY) demo/demo.py

# The demo job, then its page in the browser (`batchfiles view`) with Azurite kept running, until Ctrl-C.
view-demo: $(VENV)/.installed node_modules/.installed
	$(PY) demo/demo.py --view

# Every benchmark beside its baseline, then the ratios and the targets, printed and written into the
# generated blocks of benches/README.md. BENCH picks files (a partial run only prints: BENCH_README is
# empty then); BATCHFILES_BENCH_GIB and BATCHFILES_BENCH_ROUNDS size the large-file benchmarks.
BENCH ?= benches
BENCH_README ?= $(if $(filter benches,$(BENCH)),benches/README.md)
bench: $(VENV)/.installed node_modules/.installed
	mkdir -p .benchmarks
	$(VENV)/bin/pytest $(BENCH) -q -p no:cacheprovider --benchmark-columns=min,mean,max,rounds --benchmark-json=.benchmarks/latest.json
	$(PY) benches/report.py .benchmarks/latest.json $(if $(BENCH_README),--readme $(BENCH_README))

clean:
	rm -rf $(VENV) dist target node_modules .pytest_cache .benchmarks
