#!/usr/bin/env bash
# Runs lifeline-core's criterion benchmarks beside `openssl speed` in one run, on one pinned
# core, and rewrites the generated section of docs/BENCHMARKS.md with the figures, the ratio to
# OpenSSL and the commands used. Not part of CI (benchmarks measure; they do not pass or fail).
#
#   bash scripts/bench.sh                 # full run (about 7 minutes after the build)
#   BENCH_QUICK=1 bash scripts/bench.sh   # short measurement times, for trying the script
#
# Environment:
#   BENCH_CPU=1        core to pin to with taskset (default 1)
#   BENCH_QUICK=1      shorter warm-up/measurement and 1 s openssl runs; the document says so
#   BENCH_DOC=path     where to write (default docs/BENCHMARKS.md)
#   BENCH_NICE=-10     run the measured commands at this nice level (negative needs root): on a
#                      shared machine it keeps other work from time-slicing the pinned core
#   CARGO_TARGET_DIR   honoured; criterion's results go to (and are read from)
#                      $CARGO_TARGET_DIR/criterion, via CRITERION_HOME
#
# Needs: cargo, openssl 3.x (`speed ffdh2048`), taskset (util-linux), python3 (standard library
# only), and a Linux /proc.
set -euo pipefail
cd "$(dirname "$0")/.."

CPU=${BENCH_CPU:-1}
NICE=${BENCH_NICE:-}
QUICK=${BENCH_QUICK:-0}
DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
SIZES=(64 1400 16384)
# Criterion writes its results under CRITERION_HOME; set it so that running the bench
# executables directly (below) puts them where this script reads them.
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CRITERION_HOME="$TARGET_DIR/criterion"
CRITERION_DIR=$CRITERION_HOME

if [[ "$QUICK" == 1 ]]; then
  OSSL_SECONDS=1
  CRITERION_ARGS=(--warm-up-time 1 --measurement-time 2)
else
  OSSL_SECONDS=3
  CRITERION_ARGS=(--warm-up-time 3 --measurement-time 10)
fi
CRITERION_ARGS+=(--noplot --color never)

for tool in cargo openssl taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found" >&2; exit 1; }
done

# Every measured command runs as: $PIN <command>.
PIN=(taskset -c "$CPU")
if [[ -n "$NICE" ]]; then
  PIN=(nice -n "$NICE" "${PIN[@]}")
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log() { printf '\n== %s\n' "$*" >&2; }

# Runs a command, recording wall, user and system seconds in $WORK/$1.time (for the CPU share
# that tells whether something else ran on the pinned core meanwhile).
timed() {
  local name=$1
  shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; } 2>"$WORK/$name.time" || {
    cat "$WORK/$name.out" "$WORK/$name.err" >&2
    echo "bench.sh: failed: $*" >&2
    exit 1
  }
}

BENCH_CMD=(cargo bench -p lifeline-core --locked --bench seal_open --bench handshake)

# Build once, then run the executables themselves: every figure of a run then comes from one
# build, even if the sources change while the run is in progress (`cargo bench` would rebuild).
log "build (unpinned)"
"${BENCH_CMD[@]}" --no-run --message-format=json-render-diagnostics >"$WORK/build.json"
bench_exe() {
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[2] \
            and "bench" in m["target"]["kind"]:
        print(m["executable"])' "$WORK/build.json" "$1"
}
SEAL_EXE=$(bench_exe seal_open)
SRP_EXE=$(bench_exe handshake)
[[ -x "$SEAL_EXE" && -x "$SRP_EXE" ]] || { echo "bench.sh: bench executables not found" >&2; exit 1; }
SOURCE_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain -- core Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
  SOURCE_REV="$SOURCE_REV with uncommitted changes in core/ or the workspace manifest"
fi

# Stale results of an earlier run must not be read as this run's.
for group in seal open ctr hmac seal_open engine_send_receive srp2048 srp3072; do
  rm -rf "${CRITERION_DIR:?}/$group"
done
cat /proc/loadavg >"$WORK/load.before"

openssl_pass() {
  local pass=$1 n=$2
  log "openssl speed, $n B ($pass)"
  timed "ossl-$pass-ctr-$n" "${PIN[@]}" openssl speed -elapsed -seconds "$OSSL_SECONDS" -mr \
    -evp aes-128-ctr -bytes "$n"
  timed "ossl-$pass-hmac-$n" "${PIN[@]}" openssl speed -elapsed -seconds "$OSSL_SECONDS" -mr \
    -hmac sha1 -bytes "$n"
}

# Per size: OpenSSL, then ours, then OpenSSL again. The two OpenSSL passes bracket ours, so
# the figures compared were taken within a minute or two of each other, and a change in the
# machine's speed meanwhile shows up as a difference between them.
for n in "${SIZES[@]}"; do
  openssl_pass before "$n"
  log "criterion: packet protection, $n B (pinned to CPU $CPU)"
  timed "criterion-$n" "${PIN[@]}" "$SEAL_EXE" --bench "${CRITERION_ARGS[@]}" \
    "^(seal|open|ctr|hmac|seal_open|engine_send_receive)/$n\$"
  cat "$WORK/criterion-$n.out"
  openssl_pass after "$n"
done
# The handshake has no like-for-like OpenSSL command; FFDH over a 2048-bit group is the same
# kind of arithmetic (modular exponentiation) and shows, for scale, what the machine does meanwhile.
ffdh_pass() {
  log "openssl speed ffdh2048 ($1)"
  timed "ossl-$1-ffdh" "${PIN[@]}" openssl speed -elapsed -seconds "$OSSL_SECONDS" -mr ffdh2048
}
ffdh_pass before
log "criterion: SRP handshake (pinned to CPU $CPU)"
timed criterion-srp "${PIN[@]}" "$SRP_EXE" --bench "${CRITERION_ARGS[@]}" '^srp'
cat "$WORK/criterion-srp.out"
ffdh_pass after
cat /proc/loadavg >"$WORK/load.after"

log "writing $DOC"
BENCH_WORK="$WORK" BENCH_DOC="$DOC" BENCH_CPU="$CPU" BENCH_PIN="${PIN[*]}" BENCH_NICE="$NICE" BENCH_QUICK="$QUICK" BENCH_CRITERION_DIR="$CRITERION_DIR" \
  BENCH_OSSL_SECONDS="$OSSL_SECONDS" BENCH_CRITERION_ARGS="${CRITERION_ARGS[*]}" BENCH_SIZES="${SIZES[*]}" \
  BENCH_CMD="${BENCH_CMD[*]}" BENCH_SOURCE_REV="$SOURCE_REV" python3 - <<'PY'
import datetime, json, os, pathlib, platform, re, subprocess

env = os.environ
work = pathlib.Path(env["BENCH_WORK"])
doc = pathlib.Path(env["BENCH_DOC"])
cpu = env["BENCH_CPU"]
pin = env["BENCH_PIN"]
quick = env["BENCH_QUICK"] == "1"
crit_dir = pathlib.Path(env["BENCH_CRITERION_DIR"])
sizes = [int(n) for n in env["BENCH_SIZES"].split()]
secs = env["BENCH_OSSL_SECONDS"]
BEGIN = "<!-- BEGIN GENERATED by scripts/bench.sh: do not edit by hand -->"
END = "<!-- END GENERATED by scripts/bench.sh -->"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def times(name):
    real, user, system = (float(x) for x in (work / f"{name}.time").read_text().split())
    return real, (user + system) / real if real > 0 else 0.0


def openssl_rate(name):
    """Bytes per second from `openssl speed -mr` (`+F:<n>:<alg>:<bytes/s>...`)."""
    for line in (work / f"{name}.out").read_text().splitlines():
        if line.startswith("+F:"):
            return float(line.split(":")[3])
    raise SystemExit(f"bench.sh: no +F line in openssl output {name}")


def ffdh_ms(pass_):
    """Milliseconds per FFDH-2048 derive from `openssl speed -mr ffdh2048` (`+F8:n:2048:<ops/s>:...`)."""
    for line in (work / f"ossl-{pass_}-ffdh.out").read_text().splitlines():
        if line.startswith("+F8:"):
            return 1e3 / float(line.split(":")[3])
    raise SystemExit("bench.sh: no +F8 line in openssl ffdh2048 output")


def estimate(group, ident):
    path = crit_dir / group / str(ident) / "new" / "estimates.json"
    data = json.loads(path.read_text())
    return data["mean"]["point_estimate"], data["median"]["point_estimate"]


mb = lambda bytes_per_s: bytes_per_s / 1e6

# ---- OpenSSL: mean of the passes before and after ours -----------------------------------
ossl = {}
shares = []
for n in sizes:
    entry = {}
    for alg in ("ctr", "hmac"):
        rates = [openssl_rate(f"ossl-{p}-{alg}-{n}") for p in ("before", "after")]
        shares += [times(f"ossl-{p}-{alg}-{n}")[1] for p in ("before", "after")]
        entry[alg] = sum(rates) / 2
        entry[alg + "_drift"] = rates[1] / rates[0] - 1
    # One seal (or one open) is one CTR pass and one HMAC pass over the same bytes.
    entry["composite"] = 1 / (1 / entry["ctr"] + 1 / entry["hmac"])
    ossl[n] = entry
runs = {name: times(f"criterion-{name}") for name in [*map(str, sizes), "srp"]}
crit_real = sum(real for real, _ in runs.values())
crit_share = min(share for _, share in runs.values())

# ---- ours ------------------------------------------------------------------------------------
rows = []
detail = []
for n in sizes:
    o = ossl[n]
    so_mean, so_median = estimate("seal_open", n)
    # OpenSSL's time for the same work as one seal+open: CTR + HMAC over n bytes, twice.
    ref_ns = 2 * n / o["composite"] * 1e9
    rows.append((n, so_mean, so_median, mb(n / (so_mean * 1e-9)), o, ref_ns, ref_ns / so_mean))
    per_op_ref = n / o["composite"] * 1e9  # one seal or one open
    d = {"n": n}
    for group, ref in (("seal", per_op_ref), ("open", per_op_ref), ("engine_send_receive", ref_ns),
                       ("ctr", n / o["ctr"] * 1e9), ("hmac", n / o["hmac"] * 1e9)):
        mean, median = estimate(group, n)
        d[group] = (mean, median, ref / mean)
    detail.append(d)

hs = {key: estimate(*key.split("/", 1)) for key in
      ("srp2048/full_handshake_both_sides", "srp2048/verifier", "srp3072/full_handshake_both_sides")}
hs_ms = hs["srp2048/full_handshake_both_sides"][0] / 1e6
ffdh = [ffdh_ms(p) for p in ("before", "after")]
shares += [times(f"ossl-{p}-ffdh")[1] for p in ("before", "after")]
ffdh_mean = sum(ffdh) / 2
ffdh_drift = ffdh[1] / ffdh[0] - 1
# Exponent bits in one handshake, both sides (core/src/crypto/srp.rs): g^b, g^a (256 each) and
# g^x (160) by the small-base method; (B - kg^x)^(a+ux) (321), v^u (160) and (Av^u)^b (256) by
# the 4-bit window. One OpenSSL derive: a 225-bit exponent (RFC 7919's length for ffdhe2048).
HS_EXP_BITS, FFDH_EXP_BITS = 256 + 256 + 160 + 321 + 160 + 256, 225
ffdh_equiv_ms = ffdh_mean * HS_EXP_BITS / FFDH_EXP_BITS
ratio_1400 = next(r[6] for r in rows if r[0] == 1400)

# ---- machine -----------------------------------------------------------------------------
lscpu = sh("lscpu")
model = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
model = model.group(1) if model else platform.processor() or "unknown"
flags = (re.search(r"^Flags:\s*(.+)$", lscpu, re.M) or [None, ""])[1].split()
accel = ", ".join(f for f in ("aes", "vaes", "sha_ni", "avx2", "avx512f") if f in flags) or "none"
virt = re.search(r"^Hypervisor vendor:\s*(.+)$", lscpu, re.M)
load_before = (work / "load.before").read_text().split()[:3]
load_after = (work / "load.after").read_text().split()[:3]
noisy_share = min(shares + [crit_share])
drifts = [abs(ossl[n][a + "_drift"]) for n in sizes for a in ("ctr", "hmac")] + [abs(ffdh_drift)]

# ---- the generated section ---------------------------------------------------------------
L = []
w = L.append
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
w(BEGIN)
w("")
w(f"### Latest run: {now}" + (" (QUICK MODE: short measurements, indicative only)" if quick else ""))
w("")
w("#### Machine")
w("")
w(f"- CPU: {model}, {os.cpu_count()} logical CPUs" + (f", virtualised ({virt.group(1)})" if virt else "")
  + f"; relevant flags: {accel}")
w(f"- Every measured command runs as `{pin} ...` (criterion and openssl alike); one thread throughout")
w(f"- Source: {env['BENCH_SOURCE_REV']}")
w(f"- {sh('rustc', '-V')}; profile `bench` (workspace: inherits release, `codegen-units = 1`, "
  "`lto = \"thin\"`), no `-C target-cpu`: the crypto crates pick AES-NI/VAES/SHA-NI at run time")
w(f"- {sh('openssl', 'version')}")
w(f"- Kernel {platform.release()}; load average {' '.join(load_before)} before, {' '.join(load_after)} after")
w("")
w("#### Commands")
w("")
w("```sh")
settings = [f"BENCH_CPU={cpu}"] + (["BENCH_QUICK=1"] if quick else []) + (
    [f"BENCH_NICE={env['BENCH_NICE']}"] if env.get("BENCH_NICE") else [])
w(" ".join(settings) + " bash scripts/bench.sh")
w("# which runs, in this order:")
w(f"{env['BENCH_CMD']} --no-run   # then runs the two executables it built:")
w(f"for N in {' '.join(map(str, sizes))}; do")
w(f"  {pin} openssl speed -elapsed -seconds {secs} -mr -evp aes-128-ctr -bytes $N")
w(f"  {pin} openssl speed -elapsed -seconds {secs} -mr -hmac sha1 -bytes $N")
w(f"  {pin} target/release/deps/seal_open-<hash> --bench {env['BENCH_CRITERION_ARGS']} \\")
w("    \"^(seal|open|ctr|hmac|seal_open|engine_send_receive)/$N\\$\"")
w("  # ... and the same two openssl commands again (figures below: mean of the two passes)")
w("done")
w(f"{pin} openssl speed -elapsed -seconds {secs} -mr ffdh2048   # before and after:")
w(f"{pin} target/release/deps/handshake-<hash> --bench {env['BENCH_CRITERION_ARGS']} '^srp'")
w("```")
w("")
w("#### Packet protection: seal + open of one frame vs OpenSSL")
w("")
w("MB/s = 10^6 bytes of payload per second. `seal_open/N` seals one frame (AES-128-CTR, then")
w("HMAC-SHA1 over header + ciphertext) and opens it again (HMAC check, then CTR): two CTR passes")
w("and two HMAC passes. OpenSSL composite = 1 / (1/CTR + 1/HMAC): the throughput of one CTR")
w("pass plus one HMAC pass over the same bytes, i.e. of one seal or one open. **Ratio** = the")
w("time OpenSSL needs for the same work (2 × N bytes at the composite rate) / our time; 100 %")
w("means as fast as OpenSSL. Ours counts only the payload N, although 34 more bytes per frame")
w("are encrypted or authenticated. Neither side hashes the HMAC key per call: both keep the")
w("padded-key states (OpenSSL's `speed` re-initialises its HMAC context without a key).")
w("")
w("| payload | ours ns (mean / median) | ours MB/s | OpenSSL CTR MB/s | OpenSSL HMAC-SHA1 MB/s | composite MB/s | ratio |")
w("|---:|---:|---:|---:|---:|---:|---:|")
for n, mean, median, ours, o, ref_ns, ratio in rows:
    w(f"| {n} B | {mean:,.0f} / {median:,.0f} | {ours:,.0f} | {mb(o['ctr']):,.0f} | {mb(o['hmac']):,.0f} "
      f"| {mb(o['composite']):,.0f} | {ratio:.0%} |")
w("")
met = ratio_1400 >= 0.90
w(f"**Target: seal+open at 1400 B ≥ 90 % of the OpenSSL composite: {'MET' if met else 'MISSED'}** "
  f"({ratio_1400:.0%}" + ("" if met else f"; {0.90 / ratio_1400 - 1:.0%} faster would reach it") + ").")
w(f"Read literally (seal+open payload throughput against the composite of a single CTR + HMAC pass)")
w(f"the figure would be half of that: {ratio_1400 / 2:.0%}.")
w("")
w("The two halves on their own (`ctr/N`: CTR over the 2 + N inner plaintext bytes; `hmac/N`:")
w("HMAC-SHA1 over the 30 + N bytes a tag covers), each against the OpenSSL command for it; the")
w("last column is the HMAC's part of the time of the two halves:")
w("")
w("| payload | CTR ns | CTR MB/s | OpenSSL CTR MB/s | CTR ratio | HMAC ns | HMAC MB/s | OpenSSL HMAC MB/s | HMAC ratio | HMAC share |")
w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for d in detail:
    n, o = d["n"], ossl[d["n"]]
    ctr_ns, hmac_ns = d["ctr"][0], d["hmac"][0]
    w(f"| {n} B | {ctr_ns:,.0f} | {mb(n / (ctr_ns * 1e-9)):,.0f} | {mb(o['ctr']):,.0f} | {d['ctr'][2]:.0%} "
      f"| {hmac_ns:,.0f} | {mb(n / (hmac_ns * 1e-9)):,.0f} | {mb(o['hmac']):,.0f} | {d['hmac'][2]:.0%} "
      f"| {hmac_ns / (ctr_ns + hmac_ns):.0%} |")
w("")
w("Per direction and through the whole engine (`Session::send` → `Session::handle_frame`, with")
w("header parsing, epoch lookup, replay window and the payload copies in and out); ratio as above,")
w("against one composite pass for `seal` and `open`, two for the engine:")
w("")
w("| payload | seal ns | vs OpenSSL | open ns | vs OpenSSL | engine send+receive ns | vs OpenSSL |")
w("|---:|---:|---:|---:|---:|---:|---:|")
for d in detail:
    cells = " | ".join(f"{d[g][0]:,.0f} | {d[g][2]:.0%}" for g in ("seal", "open", "engine_send_receive"))
    w(f"| {d['n']} B | {cells} |")
w("")
w("#### SRP-6a handshake")
w("")
w("| benchmark | mean | median |")
w("|---|---:|---:|")
for key, (mean, median) in hs.items():
    w(f"| `{key}` | {mean / 1e6:.3f} ms | {median / 1e6:.3f} ms |")
w("")
hs_met = hs_ms < 3.0
w(f"**Target: a full 2048-bit handshake, both sides, under 3 ms on one core: "
  f"{'MET' if hs_met else 'MISSED'}** ({hs_ms:.2f} ms).")
w("Both sides run in one thread, so this is the sum of the leader's and the member's work")
w("(network round trips excluded). The verifier is computed once per session by the leader and")
w("is not part of it.")
w("")
w(f"For scale (not a target): `openssl speed ffdh2048` in the same run takes {ffdh_mean:.3f} ms per")
w(f"derive, one 2048-bit exponentiation with a {FFDH_EXP_BITS}-bit exponent. A handshake, both sides,")
w(f"exponentiates with {HS_EXP_BITS} exponent bits in all, so OpenSSL's arithmetic would need roughly")
w(f"{ffdh_equiv_ms:.2f} ms for as many bits: ours takes {hs_ms / ffdh_equiv_ms:.2f}× that.")
w("(A rough scale: 672 of our bits use the cheap small-generator method, and the window sizes")
w("differ.)")
w("")
w("#### How trustworthy this run is")
w("")
w(f"- CPU share of the pinned processes (CPU time / wall time), lowest: {noisy_share:.0%}. Per")
w("  criterion run: " + ", ".join(f"{name if name == 'srp' else name + ' B'} {share:.0%}"
                                 for name, (_, share) in runs.items())
  + f" ({crit_real:.0f} s in all); OpenSSL runs at least {min(shares):.0%}. Below about 95 %")
w("  something else ran on the pinned core, and wall-clock figures (criterion's and")
w("  `openssl speed -elapsed`) are inflated.")
w(f"- OpenSSL drift between the passes before and after ours: up to {max(drifts):.1%}.")
if noisy_share < 0.95 or max(drifts) > 0.10:
    w("- **This run was disturbed; treat the ratios with caution and rerun on a quiet machine.**")
w("")
w(END)
section = "\n".join(L)

if doc.exists():
    text = doc.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
else:
    text = ("# Benchmarks\n\nGenerated by `bash scripts/bench.sh`; the text outside the markers is "
            "written by hand.\n\n" + section + "\n")
doc.parent.mkdir(parents=True, exist_ok=True)
doc.write_text(text)
print(f"seal+open 1400 B: {ratio_1400:.0%} of OpenSSL ({'met' if met else 'missed'}); "
      f"2048-bit handshake {hs_ms:.2f} ms ({'met' if hs_met else 'missed'}); wrote {doc}")
PY
