#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every test, the bare-metal build of
# the core, and a short fuzz smoke per decoder. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
log() { printf '\n== %s\n' "$*"; }
started=$(date +%s)

# A one-shot run gains nothing from incremental caches; they were half of `target/` (5 GB).
export CARGO_INCREMENTAL=0
# A full run needs about 12 GB in target/ and the firmware's target/; say so before a linker
# dies of it half-way through.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${free_kb:-0}" -lt $((12 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024 / 1024)) GB free on $(df -P . | awk 'NR==2 {print $6}'); a full run needs about 12 GB" >&2
fi

bash scripts/setup.sh
# Xvfb for the screen-sharing tests (lifeline-screen starts its own server per test).
bash scripts/setup-x11.sh
# Headless Chromium + ChromeDriver for the web console's browser test (platforms/web-console).
bash scripts/setup-browser.sh

log "format"
cargo fmt --all --check

log "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "PostgreSQL for the broker's store tests (loopback, thrown away afterwards)"
# shellcheck source=scripts/postgres-test.sh
source scripts/postgres-test.sh
trap postgres_test_stop EXIT

log "appliance firmware (platforms/appliance, its own workspace, thumbv7em-none-eabihf)"
# Format, lints, the images (QEMU's mps2-an386; the NUCLEO-F429ZI bench board, build only) and
# the transport's unit tests on the host.
# The HIL scenarios in `cargo test` below (hil-tests/) boot the mps2-an386 image on QEMU.
(cd platforms/appliance && cargo fmt --all --check \
  && cargo clippy --workspace --all-features --locked --release --target-dir target -- -D warnings \
  && cargo build --locked --release --target-dir target \
  && size target/thumbv7em-none-eabihf/release/lifeline-appliance-{mps2-an386,nucleo-f429zi} \
  && cargo test --locked --target "$(rustc -vV | sed -n 's/^host: //p')" --target-dir target -p lifeline-transport-embassy)

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
