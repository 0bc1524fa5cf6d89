# p11nethsm: every set-up step lives here, so a fresh Debian 12 machine needs only
# `make demo` or `make test` (CI runs .ci/run -> make test).
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV     := .venv
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
# The module embeds the interpreter that builds it: a CPython with a shared libpython.
PYTHON   ?= $(shell command -v python3.11 || command -v python3)

# python3-dev/-venv and libpython3.11: a plain Debian 12 builds the shim against its own
# python3.11 (shared libpython in the multiarch lib dir); a pyenv Python brings its own.
APT_PACKAGES := build-essential python3-dev python3-venv libpython3.11 opensc gnutls-bin p11-kit libnss3-tools \
                libp11-kit-dev softhsm2 libengine-pkcs11-openssl openssl curl openjdk-17-jdk-headless \
                openssh-client openssh-server
# From <codename>-backports (OpenSSL 3 provider; Debian 12 has it only there): the apt source is
# derived from the machine's own Debian source by tools/enable-backports.sh.
BACKPORTS_PACKAGES := pkcs11-provider
# Only `make bench` needs these: the wire bench's zero-cost peer (nginx) and C client limit (wrk).
BENCH_APT_PACKAGES := nginx-light wrk
# `make test` covers every CPython minor of PY_VERSIONS found on the machine (tools/pymatrix.py):
# the .venv's own minor runs the whole suite in the tree; each other one gets build/py<minor>
# (a copy of the tree with its own .venv and shim build) and runs MATRIX_TESTS with MATRIX_ENV.
# A minor not found is reported as skipped. `make test PY_VERSIONS=` tests the .venv's only.
PY_VERSIONS  ?= 3.11 3.12 3.13
MATRIX_TESTS ?= tests/core tests/objects tests/net tests/shim tests/guest tests/security tests/hosts/test_host_python_pkcs11.py \
                tests/hosts/test_host_p11kit_server.py tests/docs/test_p11kit.py tests/docs/test_wheel.py
# the 100k-call fuzz and the 100-fork test run once, in the tree; shorter ones per other minor
MATRIX_ENV   ?= P11NETHSM_FUZZ_CALLS=20000 P11NETHSM_FUZZ_EXAMPLES=50 P11NETHSM_FORK_ROUNDS=3
# p11-kit skips user config (~/.config/pkcs11/modules) in programs running as root, so root
# registers system-wide; override with `make p11kit-register MODULE_DIR=...`.
MODULE_DIR   ?= $(if $(filter 0,$(shell id -u)),/etc/pkcs11/modules,$(HOME)/.config/pkcs11/modules)

.PHONY: deps bench-deps venv build test demo bench soak p11kit-register p11kit-unregister lint clean

# System packages for the real clients the tests drive (installs only what is missing).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@missing=$$(for p in $(BACKPORTS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt (backports): installing $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO tools/enable-backports.sh && $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    -t "$$(. /etc/os-release && echo $$VERSION_CODENAME)-backports" $$missing >/dev/null; \
	fi

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# Reinstalled only when the packaging files change (a stamp): a minute saved per venv and run.
venv: $(VENV)/.installed
$(VENV)/.installed: $(VENV)/pyvenv.cfg pyproject.toml setup.py emulator/pyproject.toml
	# compat: a plain path in a .pth file; the import-hook finder costs ~11 ms at every start-up
	$(PIP) install -q --config-settings editable_mode=compat -e './emulator' -e '.[test]'
	@touch $@

# Builds the shim in-tree (p11nethsm/libnethsm_pkcs11.so) against the venv's Python.
build: venv
	$(PY) libshim/build.py -o p11nethsm/libnethsm_pkcs11.so --build-dir build/shim
	@$(VENV)/bin/p11nethsm module-path

# pytest's closing line, printed last, counts the tests of every minor (tools/matrix_report.py)
test: deps build
	$(PY) tools/pymatrix.py --versions "$(PY_VERSIONS)" --matrix-tests "$(MATRIX_TESTS)" \
	    --matrix-env "$(MATRIX_ENV)" -- tests

bench-deps:
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# P1-P5 against the emulator, then W: the wire bench against nginx (bench/README.md); py-spy
# comes with the `bench` extra.
bench: deps bench-deps build
	$(PIP) install -q --config-settings editable_mode=compat -e '.[test,bench]'
	$(PY) bench/run_all.py
	$(PY) bench/wire.py

# Chaos soak (tests/soak/soak.py): 8 threads through the .so against two emulator instances under
# random faults, with forks; prints calls, faults, forks, violations. `make test` runs 12 s of it.
SOAK_SECONDS ?= 180
soak: deps build
	$(PY) tests/soak/soak.py --duration $(SOAK_SECONDS)

demo: deps build
	$(PY) demo/run_demo.py $(DEMO_ARGS)

# p11-kit registration, so p11-kit-proxy clients (GnuTLS, p11tool, NSS via p11-kit) see the token.
p11kit-register: build
	mkdir -p $(MODULE_DIR)
	printf 'module: %s\n' "$$($(VENV)/bin/p11nethsm module-path)" > $(MODULE_DIR)/p11nethsm.module
	@echo "registered $(MODULE_DIR)/p11nethsm.module; check with: p11-kit list-modules"
	@echo "(p11-kit clients read the module config from ~/.config/nitrokey/p11nethsm.conf, /etc/nitrokey/p11nethsm.conf or P11NETHSM_CONFIG_FILE)"

p11kit-unregister:
	rm -f $(MODULE_DIR)/p11nethsm.module

clean:
	rm -rf build dist *.egg-info p11nethsm/libnethsm_pkcs11.so
