# banger — developer entry points. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help deps build release agent cockpit install deb test test-unit test-smoke demo bench lint update-generated clean

# `make install`: where the file set goes, and who will own it (named by `banger update`, which
# refuses to replace a package manager's files).
PREFIX ?= /usr/local
DESTDIR ?=
MANAGED_BY ?= make install

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the tests and the demo need (root)
	smoke/lib/deps.sh

build: ## Debug build of the workspace
	$(CARGO) build --workspace --locked

release: ## Release build of the three binaries (target/release)
	$(CARGO) build --workspace --release --locked

# The guest agent runs inside VMs, whatever their C library: it is linked statically.
AGENT_TARGET := x86_64-unknown-linux-gnu
agent: ## Static build of the guest agent (target/x86_64-unknown-linux-gnu/release/banger-agent)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked -p banger-agent --target $(AGENT_TARGET)

cockpit: ## The Cockpit page, with PatternFly's CSS from cockpit/package-lock.json (target/release/cockpit)
	cockpit/build.sh target/release/cockpit

install: release ## The file set a package holds, for packagers: make install DESTDIR=… PREFIX=/usr [MANAGED_BY=rpm]; then on the host: sudo banger system setup --owner USER
	target/release/banger system install --destdir "$(if $(DESTDIR),$(abspath $(DESTDIR)),/)" --prefix "$(PREFIX)" --managed-by "$(MANAGED_BY)"

deb: release cockpit ## Debian package from this tree, built offline (target/debian/banger_VERSION_amd64.deb)
	debian/build --bin-dir target/release --out target/debian

test: deps test-unit test-smoke ## Everything: unit and interface tests, then the smoke suite on a real systemd

test-unit: ## Unit tests and interface tests on a private bus (needs root and dbus-daemon)
	$(CARGO) test --workspace --locked

test-smoke: release agent cockpit ## End-to-end scenarios in a throwaway systemd container (root)
	smoke/run --bin-dir target/release

demo: deps release agent cockpit ## Throwaway systemd container: install banger, boot a VM, update banger, show the VM's boot_id unchanged
	smoke/demo --bin-dir target/release

bench: deps release agent ## Measure every speed and memory figure beside its baseline in a throwaway systemd container; prints one table (root)
	bench/run --bin-dir target/release

lint: ## rustfmt and clippy, as CI wants them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

update-generated: ## Regenerate the checked-in introspection XML, man pages and shell completions
	BANGER_UPDATE_GENERATED=1 $(CARGO) test --workspace --locked -- introspection_matches_checked_in_contract checked_in_generated

clean: ## Remove build output and the smoke cache
	$(CARGO) clean
	rm -rf smoke/.cache
