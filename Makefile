# Sluice: `make demo` runs the main job on embedded defaults, `make test` runs the tests.
# Both set up the virtual environment first (pinned by constraints.txt).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps clients demo test lint typecheck unit lock clean bench bench-full bench-choices screenshots

# The C modules (src/sluice/wire/_scan.c, src/sluice/_redact.c) are built in place by the
# editable install; the otel extra is OpenTelemetry's SDK and exporters ([telemetry]).
$(STAMP): pyproject.toml constraints.txt setup.py src/sluice/wire/_scan.c src/sluice/_redact.c \
		src/sluice/_tokens.h
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,otel]'
	@touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/sluice demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: setup
	$(BIN)/mypy

# System programs the tests use for real, installed from Debian's packages when missing:
# nginx, HAProxy and Caddy (the proxy proofs), Chromium (the browser tests, via Playwright),
# tinyproxy (a forward proxy the upstream transports go through), Node.js and npm (the agent
# front ends' JavaScript clients), promtool (Prometheus's checker of the alert rules and
# dashboard queries in deploy/).
SYSTEM_PACKAGES := nginx=nginx-light haproxy=haproxy caddy=caddy chromium=chromium \
	tinyproxy=tinyproxy node=nodejs npm=npm promtool=prometheus

system-deps:
	bash scripts/ensure-packages.sh $(SYSTEM_PACKAGES) >/dev/null

# The JavaScript clients the agent front-end tests run (tests/clients, `npm ci` from its lock).
clients: system-deps
	bash scripts/ensure-clients.sh

unit: setup system-deps clients
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

# The regression benchmark (a few minutes; not part of `make test`), and the full run whose
# figures are in docs/benchmarks.md.
bench: setup
	bash scripts/ensure-nginx.sh >/dev/null
	$(BIN)/python -m sluice.bench --quick $(BENCH_ARGS)

bench-full: setup
	bash scripts/ensure-nginx.sh >/dev/null
	$(BIN)/python -m sluice.bench $(BENCH_ARGS)

# The building blocks compared (ASGI server, upstream client, JSON); figures in docs/benchmarks.md.
bench-choices: setup
	$(BIN)/python -m sluice.bench.choices --out docs/benchmarks/choices.json

# The pages' screenshots in docs/screenshots/ (a gateway, its simulator and Chromium).
screenshots: setup system-deps
	$(BIN)/python scripts/screenshots.py

# Re-pin every dependency after changing pyproject.toml.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check > constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis tests/clients/node_modules
