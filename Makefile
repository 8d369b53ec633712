# The two commands of the README: `make demo` and `make test`. Both set up what they need.
VENV := .venv
COLOPP := $(VENV)/bin/colopp
PYTEST := $(VENV)/bin/pytest
ARTIFACTS := artifacts

.PHONY: setup demo test unit integration lint runtime libvirt image image-debian clean

setup:
	bash scripts/setup.sh

runtime: setup
	$(COLOPP) qemu install

# Rewrites /etc/libvirt/qemu.conf and switches off libvirt network autostart: only for the
# libvirt backend (its tests and users who choose it), never for the demo.
libvirt: runtime
	$(COLOPP) libvirt setup

image: setup
	$(COLOPP) image build

# The Debian 12 server guest (~2 min fresh, cached after): the tests use it, the demo not.
image-debian: setup
	$(COLOPP) image build --guest debian

demo: runtime image
	mkdir -p $(ARTIFACTS)
	$(COLOPP) demo --json $(ARTIFACTS)/demo.json

unit: setup
	$(PYTEST) tests/unit -q

integration: runtime image image-debian
	$(PYTEST) tests/integration -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: runtime libvirt image image-debian
	$(PYTEST) tests -q

clean:
	rm -rf $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache
