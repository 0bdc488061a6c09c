# The two commands of the README:  `make serve`  and  `make test`.
# Both create .venv, install torch==2.13.0 first (never an unpinned torch), then the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# GPU users: set TORCH_INDEX_URL to PyTorch's CUDA wheel index for 2.13.0 (see README).
TORCH_INDEX_URL ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-stressed install lint typecheck redis promtool browser containers clean proto

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PIP) install --quiet -e '.[test]'
	# test-only RTMPose reference (tests/unit/test_rtmpose.py); --no-deps: its opencv-python and
	# opencv-contrib-python would displace opencv-python-headless; it needs numpy, onnxruntime, cv2, tqdm (present)
	$(PIP) install --quiet --no-deps 'rtmlib>=0.0.13,<0.1'
	touch $@

install: $(VENV)/.installed

serve: install
	$(VENV)/bin/pose3d serve --host $(HOST) --port $(PORT)

redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	      || echo "warning: could not install redis-server; Redis tests will fail"; \
	  else echo "warning: redis-server missing and cannot apt-get install it"; fi; }

# promtool checks deploy/prometheus.yml and its rules (tests/deploy/test_prometheus.py); Debian package `prometheus`.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	      || echo "warning: could not install prometheus (promtool); the Prometheus config test will fail"; \
	  else echo "warning: promtool missing and cannot apt-get install it"; fi; }

# Headless Chromium + chromedriver for tests/browser (the /demo page, Selenium); Debian packages, no browser download.
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium/chromium-driver; the browser tests will be skipped"; \
	  else echo "warning: chromium/chromedriver missing and cannot apt-get install them"; fi; }

# podman + podman-compose 1.6 and the local base images (Debian bootstrapped here, no registry needed) for
# tests/deploy/test_compose_run.py; idempotent, images cached (deploy/podman/setup.sh). Root only.
containers: install
	@if [ "$$(id -u)" = 0 ]; then sh deploy/podman/setup.sh $(PY) \
	  || echo "warning: podman setup failed; the compose run test will fail"; \
	else echo "warning: not root: cannot install podman; the compose run test is skipped"; fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

test: install redis promtool browser containers lint typecheck
	$(VENV)/bin/python -m pytest -q -ra

# The whole suite with two CPU burners beside it: no test may lean on the wall clock or an idle machine.
test-stressed: install redis promtool browser
	@python3 -c 'while True: pass' & b1=$$!; python3 -c 'while True: pass' & b2=$$!; \
	  trap 'kill $$b1 $$b2' EXIT; $(VENV)/bin/python -m pytest -q -ra

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Regenerate service/proto_gen from proto/ (committed; tests/service/test_grpc_codegen.py checks it is current).
proto: install
	$(PY) -m service.rpc.codegen
