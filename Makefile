# floorwatch: `make test` runs every test (the HIL suite on a virtual board), `make sim` runs three simulated nodes against a
# local mosquitto (extra arguments: make sim SIM_ARGS="...").
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
SIM_ARGS ?=

.PHONY: test sim bench bench-chaos venv mosquitto clean distclean

# --board virtual: the HIL suite (tests/hil) runs against a virtual board too.
test: venv mosquitto
	$(BIN)/pytest -q --board virtual

sim: venv mosquitto
	$(BIN)/floorwatch sim --boards 3 $(SIM_ARGS)

# Measurements, not tests: each script prints its figures and writes JSON to bench/results/.
bench: venv mosquitto
	$(BIN)/python bench/vibration.py
	$(BIN)/python bench/provision.py
	$(BIN)/python bench/fleet_monitor.py
	$(BIN)/python bench/wire_bytes.py
	$(BIN)/python bench/heap.py
	$(BIN)/python bench/virtual_time.py
	$(BIN)/python bench/fleet_size.py
	$(BIN)/python bench/report.py

# Issue 4's goal, measured: 100 boards through 24 simulated hours of faults (about 20 minutes).
bench-chaos: venv mosquitto
	$(BIN)/floorwatch sim --scenario chaos --boards 100 --duration 86400 --speed max --seed 24 \
		--report bench/results/chaos-100x24h.json

venv: $(VENV)/.stamp

# Reinstall only when pyproject.toml is newer than the last install.
$(VENV)/.stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

mosquitto:
	@sh tools/ensure-mosquitto.sh

clean:
	rm -rf build out .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
