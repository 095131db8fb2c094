#!/usr/bin/env bash
# Runs every fuzz target for a short time from the committed seed corpus (fuzz/seeds/<target>,
# copied into the git-ignored fuzz/corpus/<target>). Longer runs:
#   bash scripts/fuzz-smoke.sh 3600 session
# Every target runs even if an earlier one fails; the exit status is non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
shift || true
# cargo-fuzz needs nightly-only flags (sanitizers); the machine has one stable toolchain, whose
# compiler accepts them with RUSTC_BOOTSTRAP. This is for the fuzz build only.
export RUSTC_BOOTSTRAP=1
# Optimised, with debug assertions and overflow checks (`-a`): an arithmetic overflow is a bug in
# an engine that must never panic, and the unit tests would panic on it too.
# No sanitizer by default: lifeline-core forbids `unsafe`, so AddressSanitizer can only find what
# Rust's own bounds checks already turn into panics, and it makes the session target 3.5x slower.
# FUZZ_SANITIZER=address runs with it (the dependencies do use `unsafe`).
# Build and run must use the same flags, or `cargo fuzz run` rebuilds everything.
flags=(-O -a -s "${FUZZ_SANITIZER:-none}")
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "-- build: $((SECONDS - start)) s"
mkdir -p logs
failed=()
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  if [ -d "seeds/$target" ]; then
    # Keep what earlier runs found; add the seeds (and regression inputs) that are not there yet.
    for seed in seeds/"$target"/*; do
      if [ -f "$seed" ] && [ ! -e "$corpus/$(basename "$seed")" ]; then cp "$seed" "$corpus/"; fi
    done
  fi
  # -timeout: an input that runs this long is a hang (the engine's work is bounded by its input).
  if cargo fuzz run "${flags[@]}" "$target" "$corpus" -- -max_total_time="$seconds" -timeout=25 \
    -rss_limit_mb=2048 -print_final_stats=1 > "logs/$target.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$target.log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "logs/$target.log" | tail -n1)
    printf -- '-- %-18s %9s runs %7s exec/s  %s\n' "$target" "${runs:-?}" "${rate:-?}" "$cov"
  else
    tail -n 40 "logs/$target.log" >&2
    echo "fuzz target $target failed (log: fuzz/logs/$target.log, artifacts: fuzz/artifacts/$target)" >&2
    failed+=("$target")
  fi
done
echo "-- total: $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
