# revmux build entry points. `make` builds release binaries into ./bin; `make test` is the full test run;
# `make abuse` the whole abuse suite (integration-tests/abuse: attacks on the public ports).
CARGO ?= cargo
BIN := bin

.PHONY: all build test unit integration abuse demo bench lint fmt clean

all: build

build:
	$(CARGO) build --release --bins
	@mkdir -p $(BIN)
	@# --remove-destination: replacing a binary that is running (Text file busy) must work
	@cp --remove-destination target/release/p target/release/c $(BIN)/
	@echo "built ./$(BIN)/p and ./$(BIN)/c"

# cargo's unit and in-process tests, then the shell suite against the real binaries.
test: unit integration

unit:
	$(CARGO) test --workspace

# The shell suite includes the abuse cases marked fast; `make abuse` runs every abuse case
# (CASES="..." picks some), each against its own p/c pair.
integration: build
	$(MAKE) -C integration-tests

abuse: build
	$(MAKE) -C integration-tests abuse

demo: build
	./scripts/demo.sh

bench: build
	./bench/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(BIN) integration-tests/.work bench/.work
