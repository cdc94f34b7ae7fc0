# batchfiles: `make demo` runs the demo job, `make test` every test, `make bench` the benchmarks,
# `make dist` the sdist and the portable wheel that everything here installs and tests; `make test-cross` and
# `make dist-all` the other platforms (Linux aarch64, Windows x86_64), with Debian's cross toolchains.
# Each target installs what it needs: a virtualenv in .venv with the package installed from that wheel
# (release build of the Rust extension) and Azurite from package-lock.json.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SOURCES := Cargo.toml Cargo.lock pyproject.toml README.md $(shell find rust python -type f \( -name '*.rs' -o -name '*.py' -o -name '*.pyi' -o -path '*/static/*' \))
# Build tools: maturin links with zig (ziglang from PyPI, found on the venv's PATH) for glibc 2.17;
# auditwheel checks the result.
BUILD_TOOLS := "maturin>=1.9,<2" "ziglang>=0.17,<0.18" "auditwheel>=6,<7"
WHEEL_TAG := manylinux_2_17_x86_64

.PHONY: all test test-rust test-python test-strict test-installed test-live lint demo view-demo bench bench-quick dist clean chromium toolchains-cross \
	test-cross test-cross-aarch64 test-cross-windows dist-all dist-cross
all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.tools: $(PY)
	$(PIP) install $(BUILD_TOOLS)
	touch $@

# dist/: the sdist and one abi3 wheel for CPython >= 3.10 on Linux x86_64 with glibc >= 2.17 (manylinux2014),
# linked by zig without Docker; auditwheel must find it consistent with that tag, or the build fails.
dist: dist/.built
dist/.built: $(VENV)/.tools $(SOURCES)
	rm -rf dist
	$(VENV)/bin/maturin sdist --out dist
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --release --quiet --zig \
		--compatibility manylinux2014 --out dist
	report="$$($(VENV)/bin/auditwheel show dist/batchfiles-*.whl)" && echo "$$report" && \
	echo "$$report" | tr -s ' \n' ' ' | grep -q 'consistent with the following platform tag: "$(WHEEL_TAG)"' \
		|| { echo "make dist: auditwheel does not find the wheel consistent with $(WHEEL_TAG)" >&2; exit 1; }
	touch $@

# The wheel exactly as users get it (the one in dist/), with the test and bench tools.
$(VENV)/.installed: dist/.built
	$(PIP) install --force-reinstall --no-deps dist/batchfiles-*.whl
	$(PIP) install "$$(ls dist/batchfiles-*.whl)[test,bench,view]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

test: test-rust lint test-python test-strict

test-rust:
	cargo test --quiet

lint: $(VENV)/.installed
	cargo fmt --check
	cargo clippy --quiet --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches demo
	$(VENV)/bin/ruff format --check python tests benches demo

test-python: $(VENV)/.installed node_modules/.installed chromium
	$(VENV)/bin/pytest

# The suites that talk to storage once more, through a strict fault proxy in front of Azurite
# (BATCHFILES_TEST_STRICT=1, see tests/conftest.py and tests/faultproxy.py): the real Azure Blob service's
# answers where Azurite is lenient (blob types, trailing dots, metadata limits, ranges, no Retry-After...).
# Left out: fault and kill -9 rounds (test_tracking_faults but its throttling test), configuration and an
# endpoint that never answers (test_config_edges), argument parsing (test_cli_args), test_sas (its OAuth
# Azurite is its own), the 24-task throttling simulation (test_throttled_account: bench-quick runs its
# scale twin without Retry-After), the pure schedule (test_tracking_schedule), and the command line's
# get, list, save and logs (test_cli_transfer, test_cli_logs): they go through the library's snapshot,
# downloads, saves and follow_logs, whose suites run here (run stays: its own fallback when storage refuses
# a live log over a saved file).
# test_service_rules runs against Azurite and a strict proxy of its own in every pass.
STRICT_TESTS := tests/test_strict_proxy.py tests/test_storage.py tests/test_storage_aio.py \
	tests/test_tracking.py tests/test_two_writers.py tests/test_follow.py tests/test_cli_run.py \
	tests/test_throttle.py tests/test_hostile_names.py tests/test_sas_expiry.py tests/test_download.py \
	tests/test_snapshot.py tests/test_delete.py \
	tests/test_tracking_faults.py::test_under_heavy_throttling_a_tracked_save_coalesces_and_never_gives_up
test-strict: $(VENV)/.installed node_modules/.installed
	BATCHFILES_TEST_STRICT=1 $(VENV)/bin/pytest -p no:cacheprovider $(STRICT_TESTS)

# The browser tests of `batchfiles view` drive Debian's chromium with Playwright (whose own browser download
# needs the internet): installed with apt when missing, which needs root.
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "make: /usr/bin/chromium is missing and the browser tests need it: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi; }

# Other platforms, built and tested here (README, "Installing"): Linux aarch64 under qemu and Windows x86_64
# (x86_64-pc-windows-gnu) under Wine. Their toolchains are Debian's packages, installed by
# `make toolchains-cross` (root needed, as for chromium): Debian's Rust 1.96 (rustc-web; its std for arm64,
# and its std's source for Windows, built with -Zbuild-std as Debian packages no Windows std), gcc for
# aarch64, mingw, qemu-user and Wine. The packages are checked (dpkg-query) and only missing ones installed,
# again when this Makefile changes.
CROSS := target/cross
CROSS_DEBS := rustc-web cargo-web rust-web-clippy rust-web-src libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
	libc6-dev-arm64-cross qemu-user gcc-mingw-w64-x86-64 wine64
toolchains-cross: $(CROSS)/.toolchains
$(CROSS)/.toolchains: Makefile
	@missing="$$(for deb in $(CROSS_DEBS); do \
	  dpkg-query -W -f='$${db:Status-Status}' "$$deb" 2>/dev/null | grep -qx installed || echo "$$deb"; done)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make: the cross toolchains need Debian's packages:" $$missing "- run 'sudo make toolchains-cross'" >&2; \
	    exit 1; fi; \
	  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	mkdir -p $(@D)
	touch $@

# Debian's cargo, rustc and clippy come first on PATH in the cross recipes only: the rustup toolchain of
# `make test` and maturin stays as it is. Each target builds in its own folder under $(CROSS), never target/'s.
CROSS_ENV := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /" \
	CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
	CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64 \
	WINEPREFIX="$(abspath $(CROSS))/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
CROSS_CARGO := PATH="$(abspath $(CROSS))/bin:$$PATH" $(CROSS_ENV) cargo
# Windows' std from its source (rust-web-src): -Zbuild-std, a nightly flag that Debian's stable rustc takes
# with RUSTC_BOOTSTRAP=1 (std's own dependencies come from crates.io).
CROSS_WINDOWS := RUSTC_BOOTSTRAP=1 $(CROSS_CARGO)
CROSS_WINDOWS_FLAGS := --locked --target x86_64-pc-windows-gnu --target-dir $(CROSS)/windows -Zbuild-std=std,panic_unwind
CROSS_AARCH64_FLAGS := --locked --target aarch64-unknown-linux-gnu --target-dir $(CROSS)/aarch64

$(CROSS)/bin/.linked: | $(CROSS)/.toolchains
	mkdir -p $(@D)
	for tool in cargo rustc rustdoc cargo-clippy clippy-driver; do ln -sfn /usr/bin/$$tool $(@D)/$$tool; done
	touch $@

# A Wine prefix of its own, with the bcryptprimitives.dll that Wine 8 lacks (cross/processprng.c).
$(CROSS)/wine/.ready: cross/processprng.c | $(CROSS)/.toolchains
	rm -rf $(CROSS)/wine
	WINEPREFIX="$(abspath $(CROSS))/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
		/usr/lib/wine/wine64 wineboot --init
	WINEPREFIX="$(abspath $(CROSS))/wine" /usr/lib/wine/wineserver --wait
	x86_64-w64-mingw32-gcc -shared -O2 -s -o $(CROSS)/wine/drive_c/windows/system32/bcryptprimitives.dll \
		cross/processprng.c
	touch $@

# The Rust tests of both targets (the aarch64 ones under qemu, the Windows ones under Wine), then clippy for
# both, the Python binding included. Built with -Zbuild-std, std's macros are not foreign to clippy, which
# then lints thread_local!'s expansion (missing_const_for_thread_local): allowed for Windows only.
test-cross: test-cross-aarch64 test-cross-windows

test-cross-aarch64: $(CROSS)/bin/.linked
	$(CROSS_CARGO) test --quiet $(CROSS_AARCH64_FLAGS)
	$(CROSS_CARGO) clippy --quiet --all-targets --features python $(CROSS_AARCH64_FLAGS) -- -D warnings

test-cross-windows: $(CROSS)/bin/.linked $(CROSS)/wine/.ready
	$(CROSS_WINDOWS) test --quiet $(CROSS_WINDOWS_FLAGS)
	$(CROSS_WINDOWS) clippy --quiet --all-targets --features python $(CROSS_WINDOWS_FLAGS) -- -D warnings \
		-A clippy::missing_const_for_thread_local

# dist/ as `make dist` makes it (the sdist and the x86_64 wheel), and the wheels of the other platforms, abi3
# for CPython >= 3.10 like it: Linux aarch64 with glibc >= 2.17 (linked by zig, checked by auditwheel, its
# extension run under qemu) and Windows x86_64 (win_amd64; its .pyd may import only python3.dll and Windows'
# own DLLs).
# `make dist-cross DIST_CROSS=DIR` builds only these two, into DIR.
DIST_CROSS ?= dist
# maturin links aarch64 with zig (glibc 2.17 symbols), not with CROSS_ENV's gcc (Debian 12's glibc 2.36).
CROSS_MATURIN := PATH="$(abspath $(CROSS))/bin:$(abspath $(VENV))/bin:$$PATH" \
	CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc $(VENV)/bin/maturin build --release --quiet
WINDOWS_DLLS := python3.dll kernel32.dll ntdll.dll msvcrt.dll bcryptprimitives.dll userenv.dll ws2_32.dll \
	advapi32.dll bcrypt.dll api-ms-win-core-synch-l1-2-0.dll
dist-all: dist/.built
	$(MAKE) --no-print-directory dist-cross DIST_CROSS=dist
dist-cross: $(DIST_CROSS)/.aarch64 $(DIST_CROSS)/.windows

# Debian's arm64 CPython 3.11, unpacked (installed, it would replace the machine's own python3.11), runs the
# aarch64 wheel's extension under qemu: cross/smoke_native.py loads it alone (not the package, whose
# dependencies are not there) and checks hashes, names, a file read in blocks and a tracked rotation.
PYTHON_ARM64_DEBS := python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 libexpat1:arm64
PYTHON_ARM64_ROOT := $(abspath $(CROSS))/python-arm64/root
PYTHON_ARM64 := PYTHONHOME=$(PYTHON_ARM64_ROOT)/usr \
	LD_LIBRARY_PATH=$(PYTHON_ARM64_ROOT)/lib/aarch64-linux-gnu:$(PYTHON_ARM64_ROOT)/usr/lib/aarch64-linux-gnu \
	qemu-aarch64 -L / $(PYTHON_ARM64_ROOT)/usr/bin/python3.11
$(CROSS)/python-arm64/.ready: | $(CROSS)/.toolchains
	rm -rf $(@D)
	mkdir -p $(@D)/debs
	cd $(@D)/debs && apt-get download -q $(PYTHON_ARM64_DEBS)
	for deb in $(@D)/debs/*.deb; do dpkg -x "$$deb" $(PYTHON_ARM64_ROOT); done
	touch $@

$(DIST_CROSS)/.aarch64: $(VENV)/.tools $(CROSS)/bin/.linked $(CROSS)/python-arm64/.ready cross/smoke_native.py $(SOURCES)
	mkdir -p $(@D)
	rm -f $(@D)/batchfiles-*_aarch64.whl
	$(CROSS_MATURIN) --zig --compatibility manylinux2014 $(CROSS_AARCH64_FLAGS) --out $(@D)
	report="$$($(VENV)/bin/auditwheel show $(@D)/batchfiles-*_aarch64.whl)" && echo "$$report" && \
	echo "$$report" | tr -s ' \n' ' ' | grep -q 'consistent with the following platform tag: "manylinux_2_17_aarch64"' \
		|| { echo "make: auditwheel does not find the aarch64 wheel consistent with manylinux_2_17_aarch64" >&2; exit 1; }
	rm -rf $(CROSS)/wheel-aarch64
	$(PY) -m zipfile -e $(@D)/batchfiles-*_aarch64.whl $(CROSS)/wheel-aarch64
	$(PYTHON_ARM64) cross/smoke_native.py $(CROSS)/wheel-aarch64
	touch $@

$(DIST_CROSS)/.windows: $(VENV)/.tools $(CROSS)/bin/.linked $(SOURCES)
	mkdir -p $(@D)
	rm -f $(@D)/batchfiles-*-win_amd64.whl
	RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_unwind $(CROSS_MATURIN) \
		--locked --target x86_64-pc-windows-gnu --target-dir $(CROSS)/windows --out $(@D)
	wheel="$$(ls $(@D)/batchfiles-*-cp310-abi3-win_amd64.whl)" && rm -rf $(CROSS)/wheel-windows && \
	$(PY) -m zipfile -e "$$wheel" $(CROSS)/wheel-windows && \
	dlls="$$(x86_64-w64-mingw32-objdump -p $(CROSS)/wheel-windows/batchfiles/_native.pyd | sed -n 's/^\s*DLL Name: //p' \
		| tr A-Z a-z | sort -u)" && echo "$$wheel imports: "$$dlls && \
	for dll in $$dlls; do echo " $(WINDOWS_DLLS) " | grep -q " $$dll " \
		|| { echo "make: the Windows wheel's _native.pyd imports $$dll, not a DLL of Windows or python3.dll" >&2; exit 1; }; done
	touch $@

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
bench: $(VENV)/.installed node_modules/.installed chromium
	mkdir -p .benchmarks
	$(VENV)/bin/pytest $(BENCH) -q -p no:cacheprovider --benchmark-columns=min,mean,max,rounds --benchmark-json=.benchmarks/latest.json
	$(PY) benches/report.py .benchmarks/latest.json $(if $(BENCH_README),--readme $(BENCH_README))

# What users install, in clean virtualenvs (tests/installed/): the wheel in dist/ with only its runtime
# dependencies runs the README's examples and the command line against Azurite; the sdist builds a wheel.
test-installed: $(VENV)/.installed node_modules/.installed
	$(VENV)/bin/pytest tests/installed -p no:cacheprovider

# The live contract tests (tests/live/README.md) against the real Azure Blob service: skipped unless
# BATCHFILES_LIVE_CONTAINER_URL is set (a container SAS URL with racwdl, or a container URL to sign in to);
# the service's answers go to live-answers.json (or $BATCHFILES_LIVE_ANSWERS). Never part of `make test`.
# --confcutdir: tests/conftest.py, which keeps every other test on loopback, is not loaded.
test-live: $(VENV)/.installed
	$(VENV)/bin/pytest tests/live --confcutdir=tests/live -p no:cacheprovider --timeout=1800

# A short pass of every benchmark for CI (BATCHFILES_BENCH_QUICK=1: small sizes, few rounds): ratios and
# targets printed, JSON kept in .benchmarks/quick.json, benches/README.md untouched. Only a benchmark that
# errors fails it, never a figure.
bench-quick: $(VENV)/.installed node_modules/.installed chromium
	mkdir -p .benchmarks
	BATCHFILES_BENCH_QUICK=1 $(VENV)/bin/pytest benches -q -p no:cacheprovider \
		--benchmark-columns=min,mean,max,rounds --benchmark-json=.benchmarks/quick.json
	$(PY) benches/report.py .benchmarks/quick.json

clean:
	rm -rf $(VENV) dist target node_modules .pytest_cache .benchmarks
