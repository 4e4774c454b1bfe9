# Two commands matter: `make up` (start the platform with demo data) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
GENSTAMP := petplatform/__init__.py
PROTOS := $(shell find proto third_party -name '*.proto')
# The browser side (clients/): npm workspaces with one lockfile; TypeScript stubs generated from proto/ like
# the Python ones (gitignored, never edited); the static builds of the web app and the admin panel (which share
# clients/kit), served on 3100 (the panel under /admin/) by `make up`.
NPMSTAMP := clients/node_modules/.installed
TSGENSTAMP := clients/proto-ts/gen/.generated
KITSRC := $(shell find clients/kit/src -type f) clients/kit/package.json
WEBBUILD := clients/web/dist/index.html
WEBSRC := $(shell find clients/web/src clients/web/public -type f) clients/web/index.html clients/web/vite.config.ts clients/web/tsconfig.json
ADMINBUILD := clients/admin/dist/index.html
ADMINSRC := $(shell find clients/admin/src clients/admin/public -type f) clients/admin/index.html clients/admin/vite.config.ts clients/admin/tsconfig.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test lint gen install web chromium bench bench-short eval envoy helm helm-lint image image-prebuilt image-check contract-baseline clean

# The demo data's admin account (app/demo.py) registers as an admin; an environment value wins.
up: export PETPLATFORM_ADMIN_EMAILS ?= ["admin@demo.petplatform.local"]
# The local OpenID provider on the edge (/dev-oidc), offered as the sign-in provider `demo`: no network needed.
up: export PETPLATFORM_DEV_OIDC ?= true
# Payouts of the demo's completed bookings after two minutes, not the 48 hours of production.
up: export PETPLATFORM_PAYMENT_HOLD_SECONDS ?= 120
up: $(GENSTAMP) $(WEBBUILD) $(ADMINBUILD)
	$(BIN)/petplatform migrate
	$(BIN)/petplatform run --target=all --demo-data

# The browser tests (tests/e2e/web) drive Debian's chromium: installed here when missing.
test: $(GENSTAMP) lint helm-lint $(WEBBUILD) $(ADMINBUILD) chromium
	$(BIN)/python tools/check_ts_stubs.py
	$(BIN)/pytest -q -p no:cacheprovider -m "not bench" --ignore=tests/deploy

# Load generator, platform (as `make up` runs it) and a bare grpc.aio baseline in three processes; embedded and
# real profiles (PostgreSQL, RabbitMQ and Redis must be running). Exits non-zero on any failed call. The chat
# bench runs the real profile twice: as `make up` (one process) and split as production deploys chat (real-split).
bench: $(GENSTAMP)
	$(BIN)/python -m tests.bench.run
	$(BIN)/python -m tests.bench.chat
	$(BIN)/python -m tests.bench.recommender

# One second per case: checks that the bench still runs, measures nothing worth quoting.
bench-short: $(GENSTAMP)
	BENCH_SECONDS=1 $(BIN)/python -m tests.bench.run
	BENCH_SECONDS=1 BENCH_CHAT_STREAMS=100 BENCH_CHAT_RATE=100 $(BIN)/python -m tests.bench.chat
	BENCH_SECONDS=1 $(BIN)/python -m tests.bench.recommender

# The recommender's offline evaluation: one table per synthetic setting, one row per model (ml/recommender/
# evaluation.py says how; synthetic.py how the population is made). Seeded: the same tables every run.
# Then the fraud scorer's: one table per generator setting, one row per scorer (ml/fraud/evaluation.py).
eval: $(GENSTAMP)
	$(BIN)/python -m ml.recommender.evaluation
	$(BIN)/python -m ml.fraud.evaluation

lint: $(GENSTAMP)
	$(BIN)/python tools/check_vendored.py
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/buf breaking --against contract-baseline.tar.gz

gen: $(GENSTAMP) $(TSGENSTAMP)

# The static builds of the web app and the admin panel; `npm run build` type-checks each against the generated
# stubs first, so a contract change that breaks either fails here.
web: $(WEBBUILD) $(ADMINBUILD)

$(WEBBUILD): $(TSGENSTAMP) $(WEBSRC) $(KITSRC)
	cd clients/web && npm run build --silent

$(ADMINBUILD): $(TSGENSTAMP) $(ADMINSRC) $(KITSRC)
	cd clients/admin && npm run build --silent

$(TSGENSTAMP): $(STAMP) $(NPMSTAMP) $(PROTOS) buf.gen.ts.yaml
	$(BIN)/buf generate --template buf.gen.ts.yaml
	touch $@

$(NPMSTAMP): clients/package-lock.json clients/package.json clients/proto-ts/package.json clients/kit/package.json \
		clients/web/package.json clients/admin/package.json
	cd clients && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's browser for the browser test (Playwright is pointed at it; it downloads none of its own).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

# `make lint` checks the contracts against this snapshot of them, not against the last commit, so a
# break cannot pass by being spread over two commits. Remake it only for a deliberate, reviewed break
# (and say in the commit what consumers must do), or after a release.
contract-baseline:
	tar --sort=name --mtime=@0 --owner=0 --group=0 -cf - buf.yaml proto third_party | gzip -n > contract-baseline.tar.gz

# envoy/envoy.yaml from the contracts; Envoy's transcoder reads build/descriptors.binpb (made by gen).
envoy: $(GENSTAMP)
	$(BIN)/python tools/envoy_config.py
	$(BIN)/python tools/helm_values.py

# The Helm chart's copy of what it must agree with the program on (deploy/helm/petplatform/files/: the registry's
# services, ports and peers, envoy.yaml, the descriptor set), from app/registry.py and envoy/.
helm: $(GENSTAMP)
	$(BIN)/python tools/helm_values.py

# The chart rendered and linted by Helm's own engine (the helm-python-sdk package: no helm binary), with its
# default values and each ci/*-values.yaml, every object validated against Kubernetes' schemas, and held to the
# program (tests/deploy). Fails when files/ is stale: run `make helm`.
helm-lint: $(GENSTAMP)
	$(BIN)/python tools/helm_values.py --check
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy

# The one image every Deployment runs (deploy/Dockerfile), for hosts with a container engine (CONTAINER=docker or
# podman). IMAGE_BASE=registry: the Dockerfile's own base from a registry, everything made inside the build.
# IMAGE_BASE=local (the default where mmdebstrap is installed, as on this project's machines, which reach no
# container registry): a Debian bookworm base (its Python is 3.11) made by mmdebstrap, and what `make gen web` made
# and a wheelhouse made beforehand copied in, so the build needs neither a registry, Node.js 20 in the base, nor
# network.
CONTAINER ?= $(shell command -v podman >/dev/null && echo podman || echo docker)
IMAGE ?= petplatform:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_BASE ?= $(shell command -v mmdebstrap >/dev/null && echo local || echo registry)
LOCAL_BASE ?= localhost/petplatform-base:bookworm
PREBUILT := .image-prebuilt
HOST_CA ?= /etc/ssl/certs/ca-certificates.crt
# podman as this project's machines need it (deploy/podman/containers.conf), unless CONTAINERS_CONF names another.
ifeq ($(IMAGE_BASE),local)
image image-prebuilt image-check: export CONTAINERS_CONF ?= $(CURDIR)/deploy/podman/containers.conf
endif
image: $(if $(filter local,$(IMAGE_BASE)),image-prebuilt)
	$(CONTAINER) build $(CONTAINER_FLAGS) -t $(IMAGE) -f deploy/Dockerfile \
		$(if $(filter local,$(IMAGE_BASE)),--build-arg BASE=$(LOCAL_BASE) --build-arg PREBUILT=$(PREBUILT)) .

image-prebuilt: $(GENSTAMP) $(WEBBUILD) $(ADMINBUILD)
	rm -rf $(PREBUILT)/petplatform $(PREBUILT)/web $(PREBUILT)/admin && mkdir -p $(PREBUILT)/wheels
	cp -a petplatform build/descriptors.binpb $(PREBUILT)/
	cp -a clients/web/dist $(PREBUILT)/web
	cp -a clients/admin/dist $(PREBUILT)/admin
	$(CONTAINER) image inspect $(LOCAL_BASE) >/dev/null 2>&1 || \
		mmdebstrap --variant=minbase --include=python3,python3-venv --aptopt='Apt::Install-Recommends "false"' \
			bookworm - | $(CONTAINER) import - $(LOCAL_BASE)
	@# Resolved by the base's own Python (3.11.2: markers such as redis' python_full_version < "3.11.3" differ from
	@# the host's), trusting the host's CA certificates (a proxy the host trusts).
	$(CONTAINER) run --rm -v $(CURDIR):/src -w /src -e PIP_CACHE_DIR=/src/build/image-pip-cache \
		$(if $(wildcard $(HOST_CA)),-v $(HOST_CA):/etc/ssl/host-ca.crt:ro -e PIP_CERT=/etc/ssl/host-ca.crt) \
		$(LOCAL_BASE) sh -c 'python3.11 -m venv /tmp/venv && /tmp/venv/bin/pip wheel -q -w $(PREBUILT)/wheels .'

# Builds the image, then runs it as the chart does (uid 10001, read-only root): migrate, run --target=all, /readyz.
image-check: image
	CONTAINER=$(CONTAINER) deploy/image-check.sh $(IMAGE)

$(GENSTAMP): $(STAMP) $(PROTOS) tools/gen.py
	$(BIN)/python tools/gen.py

install: $(STAMP) $(NPMSTAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	@# xds-protos (dev only) ships older copies of opentelemetry/proto/*: the OTLP exporter's own must win.
	$(BIN)/python -m pip install -q --force-reinstall --no-deps \
		"opentelemetry-proto==$$(grep -o 'opentelemetry-exporter-otlp-proto-grpc==[0-9.]*' pyproject.toml | cut -d= -f3)"
	touch $(STAMP)

clean:
	rm -rf $(VENV) petplatform build data $(PREBUILT) clients/node_modules clients/proto-ts/gen clients/web/dist clients/admin/dist
