# revmux build entry points. `make` builds release binaries into ./bin; `make test` is the full test run;
# `make abuse` the whole abuse suite (integration-tests/abuse: attacks on the public ports).
# `make dist` packs stripped binaries, systemd units, man pages and completions into dist/.
CARGO ?= cargo
BIN := bin
DIST := dist
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH := $(shell uname -m)
PACKAGE := revmux-$(VERSION)-$(ARCH)-linux
# The generator of completions and man pages (proxy/examples/gen-docs.rs), a debug build
# shared with `cargo test`'s.
GEN_DOCS := target/debug/examples/gen-docs

.PHONY: all build test unit integration abuse demo bench lint fmt clean gen-docs completions man dist pack

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

gen-docs:
	$(CARGO) build --quiet -p revmux-proxy --example gen-docs

completions: gen-docs
	rm -rf $(DIST)/completions
	$(GEN_DOCS) completions $(DIST)/completions

man: gen-docs
	rm -rf $(DIST)/man
	$(GEN_DOCS) man $(DIST)/man

# The release binaries of `make build`, stripped (no second compile for a dist profile).
dist: build completions man
	$(MAKE) pack

# Packs what `make build`, `make completions` and `make man` made, compiling nothing
# (shell case 70 packs into its own DIST this way).
pack:
	rm -rf $(DIST)/$(PACKAGE) $(DIST)/$(PACKAGE).tar.gz
	mkdir -p $(DIST)/$(PACKAGE)/bin $(DIST)/$(PACKAGE)/systemd
	strip -o $(DIST)/$(PACKAGE)/bin/p target/release/p
	strip -o $(DIST)/$(PACKAGE)/bin/c target/release/c
	cp packaging/systemd/*.service packaging/systemd/README.md $(DIST)/$(PACKAGE)/systemd/
	cp -r $(DIST)/completions $(DIST)/man $(DIST)/$(PACKAGE)/
	cp README.md LICENSE-MIT LICENSE-APACHE $(DIST)/$(PACKAGE)/
	tar -C $(DIST) --sort=name --owner=0 --group=0 --numeric-owner -czf $(DIST)/$(PACKAGE).tar.gz $(PACKAGE)
	@echo "packed ./$(DIST)/$(PACKAGE).tar.gz"

clean:
	$(CARGO) clean
	rm -rf $(BIN) $(DIST) integration-tests/.work bench/.work
