#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every test, the bare-metal build of
# the core, and a short fuzz smoke per decoder. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
log() { printf '\n== %s\n' "$*"; }
started=$(date +%s)

bash scripts/setup.sh

log "format"
cargo fmt --all --check

log "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked

log "lifeline-core for thumbv7em-none-eabihf: no std, no alloc"
cargo build -p lifeline-core --locked --release --target thumbv7em-none-eabihf --no-default-features
cargo build -p lifeline-core --locked --release --target thumbv7em-none-eabihf --no-default-features --features defmt
# The dependency tree of the core must hold no std-only crate: the build above would fail, and
# this makes the claim explicit.
if cargo tree -p lifeline-core --target thumbv7em-none-eabihf -e normal --no-default-features | grep -E '\b(std|getrandom|num-bigint)\b'; then
  echo "std-only crate in lifeline-core's tree" >&2
  exit 1
fi

log "fuzz smoke (${FUZZ_SECONDS}s per target)"
bash scripts/fuzz-smoke.sh "$FUZZ_SECONDS"

log "all checks passed in $(( $(date +%s) - started ))s"
