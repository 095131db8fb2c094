#!/usr/bin/env bash
# On-target benchmarks of the appliance firmware on QEMU's mps2-an386 (Cortex-M4F) with
# `-icount shift=0`: virtual time advances 1 ns per instruction, so the firmware's elapsed
# virtual time is an instruction count (QEMU does not emulate the DWT cycle counter). Prints the
# `@bench` lines: a 2048-bit and a 3072-bit SRP join (both sides, in memory), seal and open of 1 KiB frames,
# peak stack. Not part of scripts/test.sh; results go to docs/BENCHMARKS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/../platforms/appliance"
bash ../../scripts/setup-hil.sh >/dev/null
cargo build --release --locked -p lifeline-appliance-mps2-an386 --features bench --target-dir target-bench
elf=target-bench/thumbv7em-none-eabihf/release/lifeline-appliance-mps2-an386
size "$elf"
seed=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
{ sleep 1; printf 'seed %s\r' "$seed"; sleep 3; printf 'bench\r'; sleep "${BENCH_WAIT:-60}"; } |
  timeout $(( ${BENCH_WAIT:-60} + 30 )) qemu-system-arm -machine mps2-an386 -nographic -monitor none -serial stdio \
    -icount shift=0 -kernel "$elf" -nic user,model=lan9118,restrict=on 2>&1 |
  tr -d '\r' | grep -E '^@(bench|error|panic)' || true
