#!/usr/bin/env bash
# Runs every fuzz target for a short time from the committed seed corpus. Longer runs:
#   bash scripts/fuzz-smoke.sh 3600 session
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
shift || true
# cargo-fuzz needs nightly-only flags (sanitizers); the machine has one stable toolchain, whose
# compiler accepts them with RUSTC_BOOTSTRAP. This is for the fuzz build only.
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O
mkdir -p logs
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true; fi
  if cargo fuzz run -O "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 > "logs/$target.log" 2>&1; then
    printf -- '-- %-18s %s\n' "$target" "$(grep -E '^Done [0-9]+ runs' "logs/$target.log" | tail -n1)"
  else
    tail -n 40 "logs/$target.log" >&2
    echo "fuzz target $target failed (log: fuzz/logs/$target.log, artifacts: fuzz/artifacts/$target)" >&2
    exit 1
  fi
done
