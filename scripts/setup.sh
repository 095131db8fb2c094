#!/usr/bin/env bash
# Installs every tool the build and tests need, idempotently. Safe to run on a fresh machine
# (Debian with rustup); each step skips itself when already done.
set -euo pipefail

log() { printf '\n== %s\n' "$*"; }

msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
rustc_version=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$msrv" "$rustc_version" | sort -V | head -n1)" != "$msrv" ]; then
  echo "rustc $rustc_version is older than the workspace MSRV $msrv" >&2
  exit 1
fi

log "rust targets and components (MSRV $msrv, rustc $rustc_version)"
rustup target list --installed | grep -qx thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# The firmware target, QEMU and socat for the hardware-in-loop tests (hil-tests/).
bash "$(dirname "$0")/setup-hil.sh"
