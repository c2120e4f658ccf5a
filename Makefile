# Chainfleet: `make run` starts the example devnet, `make test` runs every check.
SHELL := /bin/bash
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: install build run test lint bench

install:
	@./scripts/install.sh

build: install
	cargo build --bin chainfleet

run: build
	./target/debug/chainfleet up -f examples/devnet.yaml --state-dir .chainfleet

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test: install lint
	cargo test --workspace

bench: install
	./scripts/bench-probe.sh
	./scripts/bench-memory.sh
