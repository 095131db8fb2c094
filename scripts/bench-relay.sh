#!/usr/bin/env bash
# Relay benchmarks: lifeline-relay (the release binary) beside two baselines that the benchmark
# builds itself, a minimal tokio-rustls TLS 1.3 forwarder and a plain TCP forwarder, in one run.
# Measures server CPU-seconds per GB relayed, one-way latency with many active sessions, and RSS
# per idle session; rewrites the "relay" generated section of docs/BENCHMARKS.md.
# Not part of CI or scripts/test.sh (benchmarks measure; they do not pass or fail).
#
#   bash scripts/bench-relay.sh                  # full run
#   BENCH_RELAY_BYTES=268435456 bash scripts/bench-relay.sh   # less data per case
#
# Environment (defaults in brackets):
#   BENCH_RELAY_BYTES      bytes per throughput case and target [1073741824 = 1 GiB]
#   BENCH_RELAY_REPEAT     passes over all throughput cases; the table shows the median [3]
#   BENCH_RELAY_IDLE       idle sessions for the relay [9900, the fd limit of 20 000 / 2 less slack]
#   BENCH_RELAY_IDLE_BASE  idle sessions for each baseline forwarder [2000]
#   BENCH_RELAY_LAT        active sessions for the latency test [1000]
#   BENCH_RELAY_LAT_MS     interval between frames of one session in the latency test [100]
#   BENCH_RELAY_LAT_SECS   measured seconds of the latency test [10]
#   BENCH_RELAY_SKIP_IDLE  1: skip the idle test
#   BENCH_RELAY_PIN        1: pin the servers to CPU 1 and the load generator to CPU 0
#   BENCH_DOC              where to write [docs/BENCHMARKS.md]
#
# Needs: cargo, python3 (standard library only), Linux /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BYTES=${BENCH_RELAY_BYTES:-1073741824}
REPEAT=${BENCH_RELAY_REPEAT:-3}
IDLE=${BENCH_RELAY_IDLE:-9900}
IDLE_BASE=${BENCH_RELAY_IDLE_BASE:-2000}
LAT=${BENCH_RELAY_LAT:-1000}
LAT_MS=${BENCH_RELAY_LAT_MS:-100}
LAT_SECS=${BENCH_RELAY_LAT_SECS:-10}
SKIP_IDLE=${BENCH_RELAY_SKIP_IDLE:-0}
DOC=${BENCH_DOC:-docs/BENCHMARKS.md}

log() { printf '\n== %s\n' "$*" >&2; }

log "building lifeline-relay (release) and relay-server/bench"
cargo build --release --locked -p lifeline-relay
RELAY_BIN=$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/lifeline-relay
# The bench crate is standalone (not a workspace member) with its own target dir.
(cd relay-server/bench && CARGO_TARGET_DIR=target cargo build --release)
BENCH_BIN=$ROOT/relay-server/bench/target/release/relay-bench

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

"$RELAY_BIN" pki init "$WORK/pki" --relay local --san localhost --san 127.0.0.1 >/dev/null
# Four free loopback ports (another relay may be running on the usual ones).
read -r RELAY_PORT TLS_PORT PLAIN_PORT METRICS_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
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
[limits]
max_sessions = 10000
max_connections = 20000
handshake_timeout_secs = 60.0
idle_timeout_secs = 3600.0
connections_per_ip_per_sec = 50000.0
connections_per_ip_burst = 1000000
EOF

# BENCH_RELAY_PIN=1: servers on CPU 1, the load generator on CPU 0 (a quieter latency figure on
# an otherwise idle machine; both still share the machine with anything else running).
SERVER_CPU=()
LOADGEN_CPU=()
if [[ "${BENCH_RELAY_PIN:-0}" == 1 ]]; then
  SERVER_CPU=(taskset -c 1)
  LOADGEN_CPU=(taskset -c 0)
fi
bench() { "${LOADGEN_CPU[@]}" "$BENCH_BIN" "$@"; }

# Starts the three servers; sets RELAY_PID, TLS_PID, PLAIN_PID.
start_servers() {
  "${SERVER_CPU[@]}" "$RELAY_BIN" run --config "$WORK/relay.toml" >"$WORK/relay.out" 2>"$WORK/relay.err" &
  RELAY_PID=$!
  "${SERVER_CPU[@]}" "$BENCH_BIN" fwd --mode tls --listen "127.0.0.1:$TLS_PORT" \
    --cert "$WORK/pki/relay-local.pem" --key "$WORK/pki/relay-local.key" 2>"$WORK/tls.err" &
  TLS_PID=$!
  "${SERVER_CPU[@]}" "$BENCH_BIN" fwd --mode plain --listen "127.0.0.1:$PLAIN_PORT" 2>"$WORK/plain.err" &
  PLAIN_PID=$!
  PIDS+=("$RELAY_PID" "$TLS_PID" "$PLAIN_PID")
  for _ in $(seq 100); do
    grep -q ready "$WORK/relay.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q ready "$WORK/relay.out" || { cat "$WORK/relay.err" >&2; echo "relay did not start" >&2; exit 1; }
  sleep 0.5
}
stop_servers() {
  kill "$RELAY_PID" "$TLS_PID" "$PLAIN_PID" 2>/dev/null || true
  wait "$RELAY_PID" "$TLS_PID" "$PLAIN_PID" 2>/dev/null || true
  sleep 1
}
# target_args KIND: --target/--addr/--pid for one of relay, tls, plain.
target_args() {
  case $1 in
    relay) echo "--target relay --addr 127.0.0.1:$RELAY_PORT --pid $RELAY_PID --pki $WORK/pki --home local" ;;
    tls) echo "--target tls --addr 127.0.0.1:$TLS_PORT --pid $TLS_PID --pki $WORK/pki" ;;
    plain) echo "--target plain --addr 127.0.0.1:$PLAIN_PORT --pid $PLAIN_PID" ;;
  esac
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u '+%Y-%m-%d %H:%M UTC')

log "throughput: $BYTES bytes per case, $REPEAT passes"
start_servers
# BENCH_RELAY_REPEAT=0 skips the throughput cases (latency and idle only).
for pass in $(seq 1 "$REPEAT"); do
  for sessions in 1 100; do
    for frame in 1400 16384; do
      for kind in relay tls plain; do
        # shellcheck disable=SC2046
        bench load $(target_args $kind) --sessions "$sessions" --frame "$frame" \
          --bytes "$BYTES" --label "pass$pass" | tee -a "$RESULTS"
      done
    done
  done
done

log "latency: $LAT sessions, one 1400-byte frame every $LAT_MS ms each, $LAT_SECS s"
for kind in relay tls plain; do
  # shellcheck disable=SC2046
  bench latency $(target_args $kind) --sessions "$LAT" --frame 1400 \
    --interval-ms "$LAT_MS" --secs "$LAT_SECS" --label latency | tee -a "$RESULTS"
done
stop_servers

if [[ "$SKIP_IDLE" != 1 ]]; then
  log "idle: $IDLE relay sessions, $IDLE_BASE per baseline (fresh servers)"
  start_servers
  # shellcheck disable=SC2046
  bench idle $(target_args relay) --sessions "$IDLE" --label idle | tee -a "$RESULTS"
  stop_servers
  start_servers
  for kind in relay tls plain; do
    # shellcheck disable=SC2046
    bench idle $(target_args $kind) --sessions "$IDLE_BASE" --label idle | tee -a "$RESULTS"
  done
  stop_servers
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

log "writing $DOC"
MACHINE="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs, $(free -m | awk '/Mem:/{print $2}') MiB RAM, $(uname -sr), fd limit $(ulimit -n), rustc $(rustc --version | cut -d' ' -f2)"
python3 - "$RESULTS" "$DOC" "$MACHINE" "$START" "$LOAD_BEFORE" "$LOAD_AFTER" "$BYTES" "$REPEAT" \
  "$LAT" "$LAT_MS" "$LAT_SECS" "$IDLE" "$IDLE_BASE" <<'PY'
import json, statistics, sys
(results, doc, machine, start, load_before, load_after, nbytes, repeat, lat, lat_ms, lat_secs,
 idle, idle_base) = sys.argv[1:]
rows = [json.loads(l) for l in open(results) if l.strip()]
BEGIN = "<!-- BEGIN GENERATED by scripts/bench-relay.sh: do not edit by hand -->"
END = "<!-- END GENERATED by scripts/bench-relay.sh -->"
out = [BEGIN, "",
       f"Run of {start}: {machine}. Load average before/after: {load_before} / {load_after} "
       "(the 1-minute figure before the run says whether other work shared the machine: "
       "the benchmark alone keeps it near 1).", ""]
out += ["```sh", f"BENCH_RELAY_BYTES={nbytes} BENCH_RELAY_REPEAT={repeat} BENCH_RELAY_LAT={lat} "
        f"BENCH_RELAY_LAT_MS={lat_ms} BENCH_RELAY_LAT_SECS={lat_secs} BENCH_RELAY_IDLE={idle} "
        f"BENCH_RELAY_IDLE_BASE={idle_base} bash scripts/bench-relay.sh", "```", ""]
tput = [r for r in rows if r["label"].startswith("pass")]
out += ["### Throughput: server CPU-seconds per GB delivered (median of passes)", "",
        f"{int(nbytes)/2**30:g} GiB per case and target, one write per frame, TLS 1.3 on both hops "
        "(relay, TLS forwarder); the plain forwarder carries the same frames over TCP. "
        "`busy` is the whole machine's CPU use during the case (both cores = 100 %), "
        "load generator included.", "",
        "| sessions | frame | relay CPU-s/GB | TLS fwd CPU-s/GB | plain fwd CPU-s/GB | relay / TLS fwd (target ≤ 1.25) | relay MB/s | TLS fwd MB/s | busy (relay / TLS / plain) | passes (relay) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
def med(xs): return statistics.median(xs) if xs else float("nan")
for s in (1, 100):
    for f in (1400, 16384):
        case = {k: [r for r in tput if r["sessions"] == s and r["frame"] == f and r["target"] == k]
                for k in ("relay", "tls", "plain")}
        c = {k: med([r["cpu_s_per_gb"] for r in v]) for k, v in case.items()}
        mb = {k: med([r["mb_per_s"] for r in v]) for k, v in case.items()}
        busy = {k: med([r["machine_busy"] for r in v]) for k, v in case.items()}
        ratio = c["relay"] / c["tls"] if c["tls"] else float("nan")
        verdict = "met" if ratio <= 1.25 else "missed"
        # The relay's receiver also gets a MemberGone notice (a few dozen bytes) when the sender leaves.
        lost = sum(max(0, r["sent"] - r["delivered"]) for v in case.values() for r in v)
        passes = ", ".join(f'{r["cpu_s_per_gb"]:.2f}' for r in case["relay"])
        out.append(f"| {s} | {f} B | {c['relay']:.2f} | {c['tls']:.2f} | {c['plain']:.2f} | "
                   f"**{ratio:.2f}** ({verdict}) | {mb['relay']:.0f} | {mb['tls']:.0f} | "
                   f"{busy['relay']*100:.0f} / {busy['tls']*100:.0f} / {busy['plain']*100:.0f} % | {passes} |"
                   + ("" if lost == 0 else f" (!{lost} B not delivered)"))
out.append("")
names = {"relay": "lifeline-relay", "tls": "TLS forwarder", "plain": "plain forwarder"}
lats = [r for r in rows if r["label"] == "latency"]
if lats:
    out += [f"### Latency: one-way, {lat} active sessions, one 1400-byte frame every {lat_ms} ms each", "",
            "Send timestamp in the payload, read by the same process on arrival; includes the load "
            "generator's own TLS and scheduling on the shared cores.", "",
            "| server | frames measured (expected) | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | server CPU-s | busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by = {}
    for r in lats:
        by[r["target"]] = r
        out.append(f"| {names[r['target']]} | {r['samples']} ({r['expected']}) | {r['p50_us']} | {r['p90_us']} | "
                   f"{r['p99_us']} | {r['p999_us']} | {r['max_us']} | {r['server_cpu_s']:.2f} | {r['machine_busy']*100:.0f} % |")
    if "relay" in by and "tls" in by:
        out += ["", f"Added by the relay over the TLS forwarder: p50 {by['relay']['p50_us'] - by['tls']['p50_us']} µs, "
                f"p99 {by['relay']['p99_us'] - by['tls']['p99_us']} µs."]
    out.append("")
idles = [r for r in rows if r["label"] == "idle"]
if idles:
    out += ["### Idle sessions: server RSS per session (two TLS connections each; target ≤ 48 kB for the relay)", "",
            "VmRSS of the server after opening the sessions (and 3 s settling) minus before, divided by "
            "sessions. The load generator runs in its own process, so its descriptors do not count "
            "against the server's limit.", "",
            "| server | sessions | opened in s | RSS before kB | RSS after kB | kB / session | server fds | client fds | still routes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in idles:
        out.append(f"| {names[r['target']]} | {r['sessions']} | {r['open_s']} | {r['rss_before_kb']} | "
                   f"{r['rss_after_kb']} | **{r['kb_per_session']:.1f}** | {r['server_fds']} | {r['loadgen_fds']} | {'yes' if r['ok'] else 'NO'} |")
    out.append("")
out.append(END)
text = open(doc).read()
block = "\n".join(out)
if BEGIN in text and END in text:
    head, rest = text.split(BEGIN, 1)
    text = head + block + rest.split(END, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n## Relay (lifeline-relay)\n\n" + block + "\n"
open(doc, "w").write(text)
PY
log "done"
