# Entry points. `make demo` and `make test` work from a fresh clone on a
# Debian machine with root: they install what they need themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
BIN := $(VENV)/bin
DISTROS ?= bookworm
SCENARIOS ?= $(filter-out demo,$(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))))
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv host images lint unit molecule test demo demo-destroy bench clean

help:
	@echo "make demo    - deploy the stack into a local systemd container and print its URL (ARGS='-e var=value')"
	@echo "make test    - lint, unit tests, every molecule scenario side by side (what CI runs)"
	@echo "make lint | unit | molecule [SCENARIOS='default firewall_ufw'] | bench | demo-destroy"
	@echo "scenarios: $(SCENARIOS)"

$(VENV)/.stamp: requirements.txt
	rm -rf $(VENV)
	"$$(scripts/find-python)" -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.stamp

host:
	scripts/host-deps

images: host
	molecule/images/build $(DISTROS)

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production --strict .
	$(BIN)/python scripts/role-docs --check

# Unit tests (filters, modules, launcher, watchdog), the AWS provider against
# moto_server and the Aliyun/Tencent providers against local contract servers
# on 127.0.0.1; no containers needed. Three groups side by side.
unit: venv
	scripts/unit-tests

# Every scenario runs even when one fails; JOBS run side by side (each has its
# own container); the summary names the failures and the target fails if any
# did. Logs: .cache/molecule-logs/<scenario>.log. The slowest start first.
JOBS ?= 2
SLOW_FIRST := scaleout verify cosyvoice_real drift supervisord proxy default
molecule: venv images
	COLUMNS=250 scripts/run-scenarios $(JOBS) $(filter $(SCENARIOS),$(SLOW_FIRST)) $(filter-out $(SLOW_FIRST),$(SCENARIOS))

# lint, the unit tests and the molecule scenarios side by side (lint is CPU
# for ~3.5 min while the first scenarios mostly wait on installs); lint's and
# the unit tests' output is printed after the scenarios', then a digest of
# what failed in each failed scenario, so the end of the output names it;
# fails when any of the three fails.
test: venv images
	mkdir -p .cache
	$(MAKE) --no-print-directory lint > .cache/lint.log 2>&1 & lint=$$!; \
	scripts/unit-tests > .cache/unit-tests.log 2>&1 & unit=$$!; \
	if $(MAKE) --no-print-directory molecule; then m=0; else m=1; fi; \
	if wait $$lint; then l=0; else l=1; fi; \
	if wait $$unit; then u=0; else u=1; fi; \
	echo "=== lint ==="; cat .cache/lint.log; \
	echo "=== unit tests ==="; cat .cache/unit-tests.log; \
	[ $$m -eq 0 ] || scripts/failure-digest; \
	[ $$l -eq 0 ] || echo "make test: lint FAILED (its output is above)"; \
	[ $$m -eq 0 ] && [ $$u -eq 0 ] && [ $$l -eq 0 ]

# Extra ansible-playbook arguments: make demo ARGS='-e cosyvoice_server_port=7861'
demo: venv images
	scripts/demo $(ARGS)

# Re-run speed as ratios (not a CI test): N targets over docker and SSH;
# writes reports/bench.md. make bench ARGS='--hosts 4 --connections docker'
bench: venv images
	$(BIN)/python tests/bench/bench.py $(ARGS)

demo-destroy:
	-.venv/bin/molecule destroy -s demo
	rm -f inventory/local-demo.yml

clean: demo-destroy
	rm -rf $(VENV) .cache
