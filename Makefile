# banger — developer entry points. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help deps build release test test-unit test-smoke demo lint update-generated clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the tests and the demo need (root)
	smoke/lib/deps.sh

build: ## Debug build of the workspace
	$(CARGO) build --workspace --locked

release: ## Release build of the three binaries (target/release)
	$(CARGO) build --workspace --release --locked

test: deps test-unit test-smoke ## Everything: unit and interface tests, then the smoke suite on a real systemd

test-unit: ## Unit tests and interface tests on a private bus (needs root and dbus-daemon)
	$(CARGO) test --workspace --locked

test-smoke: release ## End-to-end scenarios in a throwaway systemd container (root)
	smoke/run --bin-dir target/release

demo: deps release ## Throwaway systemd container: install banger, boot a VM, update banger, show the VM's boot_id unchanged
	smoke/demo --bin-dir target/release

lint: ## rustfmt and clippy, as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

update-generated: ## Regenerate the checked-in introspection XML, man pages and shell completions
	BANGER_UPDATE_GENERATED=1 $(CARGO) test --workspace --locked -- introspection_matches_checked_in_contract checked_in_generated

clean: ## Remove build output and the smoke cache
	$(CARGO) clean
	rm -rf smoke/.cache
