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

.PHONY: all deps build run test test-c test-python test-photos bench format format-check clean

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

# ecsnet-imagenet-lite0 on real photos from package registries (tests/photos/run.sh).
test-photos: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/photos/run.sh

bench: build
	@ECSNET_BUILD_DIR=$(abspath $(BUILD)) bash tests/bench/run.sh

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' '*.cu')
format:
	@clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
