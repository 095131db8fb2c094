#!/usr/bin/env bash
# Screen pipeline benchmark (lifeline-screen), not part of the tests: a private 1920x1080 Xvfb,
# workloads static / typing / scrolling / noise; capture (MIT-SHM and GetImage), encode, decode,
# bytes per frame, and LZ4 of the whole frame as the reference. Results: docs/BENCHMARKS.md.
#   bash scripts/bench-screen.sh [frames per workload, default 120]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-x11.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-screen}
cargo build --release --locked -p lifeline-screen --example screen_bench
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$CARGO_TARGET_DIR/release/examples/screen_bench" "${1:-120}"
