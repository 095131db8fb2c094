#!/usr/bin/env bash
# File-transfer throughput beside the relay's raw goodput, in the same run with the same relay
# binary (issue 6's performance target: the transfer at least 80 % of the raw goodput).
#
# Each pass runs, one after the other:
#   raw:      `relay-bench load` (relay-server/bench) through a fresh `lifeline-relay`: one session,
#             a leader pushing 1 GiB of 16 KiB SecureData frames to a member over TLS, at most
#             512 KiB unread (the apps' transfer window): what the relay itself can carry;
#   transfer: the `one_gibibyte_arrives_intact` test of platforms/desktop/tests/apps.rs with the
#             same relay binary (LIFELINE_RELAY_BIN): `lifeline support` sends a 1 GiB random file
#             to `lifeline join` through it, timed from `/accept` to "Received".
# Everything is built with the release profile. Prints one line per case and a summary table
# (markdown) to paste into docs/BENCHMARKS.md ("File transfer").
#
# Environment:
#   BENCH_TRANSFER_REPEAT   passes (default 3); the summary gives the median of each side
#   BENCH_TRANSFER_BASE     path to another `lifeline` binary (an older build, copied aside): each pass
#                           also runs the transfer with it (LIFELINE_BIN), for a before/after
#   BENCH_TRANSFER_NICE     e.g. -10 (as root): run both sides at that niceness, so that other work
#                           on a shared machine takes less of the cores from either side
#   CARGO_TARGET_DIR        as usual (default target); relay-bench builds under it in relay-bench/
#
# Needs: cargo, python3 (standard library only), Linux /proc. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPEAT=${BENCH_TRANSFER_REPEAT:-3}
NICE=()
if [[ -n "${BENCH_TRANSFER_NICE:-}" ]]; then
  NICE=(nice -n "$BENCH_TRANSFER_NICE")
fi
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")

log() { printf '\n== %s\n' "$*" >&2; }

log "building (release): lifeline-relay, the desktop apps test, relay-bench"
cargo build --release --locked -p lifeline-relay --bin lifeline-relay
RELAY_BIN=$TARGET/release/lifeline-relay
TEST_BIN=$(cargo test --release --locked -p lifeline-desktop --test apps --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "apps" and m.get("executable"):
        print(m["executable"])')
(cd relay-server/bench && cargo build --release --locked --target-dir "$TARGET/relay-bench")
BENCH_BIN=$TARGET/relay-bench/release/relay-bench

WORK=$(mktemp -d)
RELAY_PID=
cleanup() {
  [[ -n "$RELAY_PID" ]] && kill "$RELAY_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$RELAY_BIN" pki init "$WORK/pki" --relay local --san localhost --san 127.0.0.1 >/dev/null
read -r RELAY_PORT METRICS_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
cat >"$WORK/relay.toml" <<EOF
name = "local"
listen = ["127.0.0.1:$RELAY_PORT"]
metrics_listen = "127.0.0.1:$METRICS_PORT"
[tls]
cert = "$WORK/pki/relay-local.pem"
key = "$WORK/pki/relay-local.key"
ca = "$WORK/pki/ca.pem"
[tickets]
verify_key = "$WORK/pki/ticket-verify.pem"
EOF

raw_pass() {
  "${NICE[@]}" "$RELAY_BIN" run --config "$WORK/relay.toml" >"$WORK/relay.out" 2>"$WORK/relay.err" &
  RELAY_PID=$!
  for _ in $(seq 100); do
    grep -q ready "$WORK/relay.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q ready "$WORK/relay.out" || { cat "$WORK/relay.err" >&2; echo "relay did not start" >&2; exit 1; }
  "${NICE[@]}" "$BENCH_BIN" load --target relay --addr "127.0.0.1:$RELAY_PORT" --pid "$RELAY_PID" --pki "$WORK/pki" \
    --home local --sessions 1 --frame 16384 --bytes 1073741824 --label "raw"
  kill "$RELAY_PID" 2>/dev/null || true
  wait "$RELAY_PID" 2>/dev/null || true
  RELAY_PID=
}

# transfer_pass [LIFELINE_BIN]: the test with cargo's `lifeline`, or with the given one.
transfer_pass() {
  if ! env ${1:+LIFELINE_BIN="$1"} LIFELINE_RELAY_BIN="$RELAY_BIN" "${NICE[@]}" "$TEST_BIN" one_gibibyte \
    --ignored --nocapture --test-threads 1 >"$WORK/test.out" 2>&1; then
    # Reported and counted, not fatal: one failed pass should not lose the others.
    tail -n 30 "$WORK/test.out" >&2
    echo "transfer failed (output above, on stderr)"
    return 0
  fi
  grep -oE '(1 GiB in|cpu seconds) .*' "$WORK/test.out"
}

RESULTS=$WORK/results.txt
: >"$RESULTS"
START=$(date -u '+%Y-%m-%d %H:%M UTC')
for pass in $(seq 1 "$REPEAT"); do
  log "pass $pass of $REPEAT"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
  raw_pass | tee -a "$RESULTS"
  if [[ -n "${BENCH_TRANSFER_BASE:-}" ]]; then
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
    echo "base" | tee -a "$RESULTS"
    transfer_pass "$BENCH_TRANSFER_BASE" | tee -a "$RESULTS"
  fi
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
  transfer_pass | tee -a "$RESULTS"
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

log "summary"
REV=$( (git rev-parse --short HEAD && { git diff --quiet || echo "with uncommitted changes"; }) 2>/dev/null | xargs || true)
python3 - "$RESULTS" "$START" "$REPEAT" "${REV:-unknown}" "${BENCH_TRANSFER_NICE:-0}" <<'EOF'
import json, re, statistics, sys
path, start, repeat, rev, nice = sys.argv[1:]
raw, transfer, base, loads = [], [], [], []
failures = 0
current = transfer
for line in open(path):
    line = line.strip()
    if line.startswith("{"):
        raw.append(json.loads(line))
    elif line == "base":
        current = base
    elif line.startswith("1 GiB in"):
        current.append({"mb_per_s": float(re.search(r"([0-9.]+) MB/s", line).group(1))})
    elif line.startswith("cpu seconds") and current:
        values = [float(v) for v in re.findall(r"(?:provider|customer|relay) ([0-9.]+)", line)]
        current[-1]["cpu"] = values
        current = transfer
    elif line.startswith("transfer failed"):
        failures += 1
        current.append(None)
        current = transfer
    elif line.startswith("load "):
        loads.append(line[5:])
print(f"Run of {start}, source {rev}, {repeat} passes, release profile, niceness {nice}. Load average (1/5/15 min) "
      f"before each case and at the end: {'; '.join(loads)}.")
print()
print("| pass | raw MB/s | transfer MB/s | transfer / raw | raw CPU-s (relay + client) | "
      "transfer CPU-s (provider + customer + relay) |")
print("|---:|---:|---:|---:|---:|---:|")
for i, (r, t) in enumerate(zip(raw, transfer), 1):
    if t is None:
        print(f"| {i} | {r['mb_per_s']:,.0f} | failed | | | |")
        continue
    cpu = t.get("cpu", [0, 0, 0])
    print(f"| {i} | {r['mb_per_s']:,.0f} | {t['mb_per_s']:,.0f} | {100 * t['mb_per_s'] / r['mb_per_s']:.0f} % | "
          f"{r['server_cpu_s']:.2f} + {r['loadgen_cpu_s']:.2f} = {r['server_cpu_s'] + r['loadgen_cpu_s']:.2f} | "
          f"{cpu[0]:.2f} + {cpu[1]:.2f} + {cpu[2]:.2f} = {sum(cpu):.2f} |")
if raw and transfer:
    r = statistics.median(x["mb_per_s"] for x in raw)
    t = statistics.median(x["mb_per_s"] for x in transfer if x)
    print(f"| median | {r:,.0f} | {t:,.0f} | **{100 * t / r:.0f} %** | | |")
if base:
    print()
    print("The other `lifeline` build (BENCH_TRANSFER_BASE), in the same passes:")
    print()
    print("| pass | raw MB/s | transfer MB/s (other build) | transfer / raw | transfer CPU-s (provider + customer + relay) |")
    print("|---:|---:|---:|---:|---:|")
    for i, (r, t) in enumerate(zip(raw, base), 1):
        if t is None:
            print(f"| {i} | {r['mb_per_s']:,.0f} | failed | | |")
            continue
        cpu = t.get("cpu", [0, 0, 0])
        print(f"| {i} | {r['mb_per_s']:,.0f} | {t['mb_per_s']:,.0f} | {100 * t['mb_per_s'] / r['mb_per_s']:.0f} % | "
              f"{cpu[0]:.2f} + {cpu[1]:.2f} + {cpu[2]:.2f} = {sum(cpu):.2f} |")
    r = statistics.median(x["mb_per_s"] for x in raw)
    t = statistics.median(x["mb_per_s"] for x in base if x)
    print(f"| median | {r:,.0f} | {t:,.0f} | **{100 * t / r:.0f} %** | |")
if failures:
    print(f"\n**{failures} transfer pass(es) failed** (their output is on stderr); see the rows marked failed.")
EOF
