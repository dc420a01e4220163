#!/usr/bin/env bash
# benches/callgrind.sh - instructions kleiber executes per routed chat message (and per login),
# counted by valgrind's callgrind. Instruction counts repeat to a fraction of a per cent where
# wall-clock throughput on a small, shared VM varies by 10-20 %: use this to check that a change
# keeps (or improves) the cost of the hot path, compare.sh for the real speed.
#
# Usage:  benches/callgrind.sh KLEIBER_BIN LOAD_BIN [PAIRS]
#   KLEIBER_BIN  the kleiber binary to measure (a release build: `cargo build --release`)
#   LOAD_BIN     the load generator (`cargo bench --bench load --no-run` prints its path); to
#                compare two kleiber builds, use the same LOAD_BIN for both
#   PAIRS        ping-pong pairs (default 10; 2*PAIRS sessions)
# e.g.    benches/callgrind.sh target/release/kleiber target/release/deps/load-0123abcd
#         RUNS=2 DURATION=30 TAG=after benches/callgrind.sh /tmp/kleiber-after "$LOAD" 10
# Environment: DURATION (measured seconds of ping-pong, default 20), RUNS (repetitions,
# default 1), TAG (name of the output files, default the binary's file name), OUTDIR (default
# /tmp/callgrind), QUIET_WAIT (seconds to wait for an idle machine before each run, default 30),
# KEEP=1 (keep the runtime directory), VALGRIND_ARGS (more callgrind options).
#
# What it does:
#   1. Starts kleiber natively with compare.sh's config (benches/lib.sh, kleiber_start; its own
#      self-signed certificate, generated now, so not in any measured run), registers the
#      2*PAIRS users (load --register-only), stops it and keeps that data directory.
#   2. Each run is three servers under `valgrind --tool=callgrind`, each on a copy of that data
#      directory (so the same database and certificate every time), stopped with SIGTERM (a
#      graceful stop; callgrind writes its file at exit):
#        base        start, DURATION+2 s idle, stop                       (no client)
#        idle        start, 2*PAIRS logins, DURATION s idle, close, stop  (load --idle --settle)
#        throughput  start, 2*PAIRS logins, DURATION s ping-pong, close, stop
#      The idle and throughput runs take the same wall time, so the server's time-driven work
#      (timers, the database's flusher) cancels out in their difference.
#   3. Ir (instructions executed, all threads) of each, less the spin-waits (SPIN, below); then
#        routed messages = msgs (received within the measured window, the RESULT line)
#                          + PAIRS (the one in flight per pair at the deadline, delivered in the
#                            drain and not answered; the run is refused if any is undelivered)
#        Ir/message = (Ir throughput - Ir idle) / routed messages
#        Ir/login   = (Ir idle - Ir base) / (2*PAIRS): TCP, STARTTLS, SCRAM, bind, initial
#                     presence, close, and DURATION s of an idle session
#      and prints one line per run and a last line with the medians (of RUNS):
#        CALLGRIND tag=... run=N pairs=.. ir_base=.. ir_idle=.. ir_throughput=.. msgs=..
#                  routed=.. ir_per_msg=.. ir_per_login=.. (spin_*=.. raw_ir_per_msg=..)
#   Spin-waits: valgrind runs one thread at a time, so a thread that busy-waits for another
#   (sled's `Lazy` initialisation lock, `while cas {}`) spins until its time slice ends, or for
#   as long as the other thread sits in a system call: from a few million to 150 million
#   instructions, at random, mostly at the start. SPIN (a fixed-string grep pattern, default
#   `sled::lazy::Lazy<T,F> as core::ops::deref::Deref>::deref`) names the functions whose own
#   (self) instructions are taken off every total (their callees, the initialisers, stay); the
#   spin_* fields say how much that was. SPIN="" keeps everything.
#   The callgrind files stay in OUTDIR (TAG.MODE.RUN.out): see where the instructions go with
#   `callgrind_annotate OUTDIR/TAG.throughput.1.out` (compare with the idle file of the run).
#   The server's readiness is checked with `ss`, not by connecting (a connection would count).
#
# Reading the figures: with the spin-waits taken off, Ir/message repeats within about +-0.3 %
# and Ir/login within +-0.2 % (PAIRS=10, DURATION=20; a run takes about 1.5 minutes). Ir/message
# still rises a little with the rate the run reached (msgs; about +0.1 % per 1,000 more messages
# in 20 s; probably fewer messages found per wake-up), so compare medians of RUNS=2 or more
# and glance at msgs. Under valgrind a `rep stosb` (memset) counts one instruction per byte, so
# zeroing buffers weighs more here than on the CPU.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
KLEIBER_BIN="$(realpath "$1")"
LOAD_BIN="$(realpath "$2")"
PAIRS="${3:-10}"
DURATION="${DURATION:-20}"
RUNS="${RUNS:-1}"
TAG="${TAG:-$(basename "$KLEIBER_BIN")}"
OUTDIR="${OUTDIR:-/tmp/callgrind}"
QUIET_WAIT="${QUIET_WAIT:-30}"
KEEP="${KEEP:-0}"
VALGRIND_ARGS="${VALGRIND_ARGS:-}"
SPIN="${SPIN-sled::lazy::Lazy<T,F> as core::ops::deref::Deref>::deref}"

[ -x "$KLEIBER_BIN" ] || { echo "no kleiber binary at $1" >&2; exit 1; }
[ -x "$LOAD_BIN" ] || { echo "no load generator at $2" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# What benches/lib.sh expects of its caller.
SKIP_BUILD=1
KLEIBER_CERT=""
KLEIBER_KEY=""
KLEIBER_DOMAIN=localhost
KLEIBER_LIMITS=""
FAILED=0
mkdir -p "$OUTDIR"
OUT="$OUTDIR/$TAG.results.txt"
WORK="$(mktemp -d /tmp/kleiber-callgrind.XXXXXX)"

log() { echo "[callgrind $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

# kleiber under callgrind (pid in KLEIBER_PID, so that bench_cleanup stops it too), on a fresh
# copy of the registered data directory and a new port. Under valgrind the start takes seconds.
cg_start() { # cg_start OUTFILE
  local out="$1"
  KLEIBER_PORT="$(free_port)"
  sed -i "s/127\.0\.0\.1:[0-9]*/127.0.0.1:$KLEIBER_PORT/" "$WORK/kleiber/kleiber.toml"
  rm -rf "$WORK/kleiber/data"
  cp -a "$WORK/registered" "$WORK/kleiber/data"
  rm -f "$out"
  # shellcheck disable=SC2086 # VALGRIND_ARGS is split on purpose
  (cd "$WORK/kleiber" && exec valgrind --tool=callgrind --callgrind-out-file="$out" \
    $VALGRIND_ARGS "$KLEIBER_BIN" serve --config "$WORK/kleiber/kleiber.toml") \
    >> "$WORK/kleiber/kleiber.log" 2>&1 &
  KLEIBER_PID=$!
  local i
  for i in $(seq 1 600); do
    if ss -ltnH "( sport = :$KLEIBER_PORT )" 2>/dev/null | grep -q .; then
      log "kleiber under callgrind listening after $(( i / 5 )) s, pid $KLEIBER_PID, port $KLEIBER_PORT"
      return 0
    fi
    [ -d "/proc/$KLEIBER_PID" ] || break
    sleep 0.2
  done
  log "kleiber under callgrind did not listen on $KLEIBER_PORT; last lines of its log:"
  tail -n 20 "$WORK/kleiber/kleiber.log" >&2
  return 1
}

# Graceful stop (SIGTERM), waiting as long as it takes: a SIGKILL would lose callgrind's file.
cg_stop() {
  [ -n "$KLEIBER_PID" ] || return 0
  kill "$KLEIBER_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 3000); do [ -d "/proc/$KLEIBER_PID" ] || break; sleep 0.2; done
  if [ -d "/proc/$KLEIBER_PID" ]; then
    log "kleiber under callgrind still running 10 minutes after SIGTERM; killing it"
    kill -9 "$KLEIBER_PID" 2>/dev/null || true
  fi
  wait "$KLEIBER_PID" 2>/dev/null || true
  KLEIBER_PID=""
}

total_ir() { # total_ir OUTFILE: the instructions of the whole run
  local v
  v="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$1" 2>/dev/null | head -1)"
  [ -n "$v" ] || v="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1" 2>/dev/null | head -1)"
  [ -n "$v" ] || { log "no totals in $1 (did the server exit cleanly?)"; return 1; }
  echo "$v"
}

spin_ir() { # spin_ir OUTFILE: self instructions of the SPIN functions
  [ -n "$SPIN" ] || { echo 0; return; }
  callgrind_annotate --inclusive=no --threshold=100 --auto=no "$1" 2>/dev/null \
    | grep -F -- "$SPIN" | awk '{ gsub(",", "", $1); s += $1 } END { printf "%d\n", s }'
}

field() { # field NAME RESULT-LINE
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1
}

cleanup() { # on exit: stop the server (gracefully), then lib.sh's clean-up (WORK kept on failure)
  local rc=$?
  cg_stop
  [ "$rc" = 0 ] || FAILED=1
  bench_cleanup
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TARGET_ARGS() { echo "--host 127.0.0.1 --port $KLEIBER_PORT --domain $KLEIBER_DOMAIN"; }

log "$TAG: $KLEIBER_BIN, load $LOAD_BIN, $PAIRS pairs, $DURATION s, $RUNS run(s); files in $OUTDIR"
log "registering $(( 2 * PAIRS )) users (kleiber without valgrind)"
kleiber_start
# shellcheck disable=SC2046 # TARGET_ARGS prints several words
reg="$(load "$TAG" $(TARGET_ARGS) --pairs "$PAIRS" --register-only)"
kleiber_stop
if [ "$(field ok "$reg")" != "$(( 2 * PAIRS ))" ]; then
  log "registration failed: $reg"; FAILED=1; exit 1
fi
cp -a "$WORK/kleiber/data" "$WORK/registered"

LINES=()
for run in $(seq 1 "$RUNS"); do
  declare -A ir=() spin=()
  msgs=""
  for mode in base idle throughput; do
    wait_quiet
    file="$OUTDIR/$TAG.$mode.$run.out"
    log "=== $TAG run $run: $mode"
    cg_start "$file" || { FAILED=1; exit 1; }
    case "$mode" in
      base) sleep $(( DURATION + 2 )) ;;
      idle)
        # shellcheck disable=SC2046
        r="$(load "$TAG" $(TARGET_ARGS) --idle $(( 2 * PAIRS )) --settle "$DURATION")"
        [ "$(field bound "$r")" = "$(( 2 * PAIRS ))" ] && [ "$(field errors "$r")" = 0 ] \
          || { log "idle run failed: $r"; FAILED=1; exit 1; } ;;
      throughput)
        # shellcheck disable=SC2046
        r="$(load "$TAG" $(TARGET_ARGS) --pairs "$PAIRS" --duration "$DURATION")"
        msgs="$(field msgs "$r")"
        if [ -z "$msgs" ] || [ "$(field errors "$r")" != 0 ] || [ "$(field undelivered "$r")" != 0 ] \
          || [ "$(field bound "$r")" != "$(( 2 * PAIRS ))" ]; then
          log "throughput run failed (or messages lost, errors): $r"; FAILED=1; exit 1
        fi ;;
    esac
    cg_stop
    raw="$(total_ir "$file")" || { FAILED=1; exit 1; }
    spin[$mode]="$(spin_ir "$file")"
    ir[$mode]=$(( raw - ${spin[$mode]} ))
    log "$mode: Ir $raw, of which spinning ${spin[$mode]}"
  done
  routed=$(( msgs + PAIRS ))
  per_msg=$(( (${ir[throughput]} - ${ir[idle]}) / routed ))
  per_login=$(( (${ir[idle]} - ${ir[base]}) / (2 * PAIRS) ))
  raw_per_msg=$(( (${ir[throughput]} + ${spin[throughput]} - ${ir[idle]} - ${spin[idle]}) / routed ))
  line="CALLGRIND tag=$TAG run=$run pairs=$PAIRS duration_s=$DURATION ir_base=${ir[base]} \
ir_idle=${ir[idle]} ir_throughput=${ir[throughput]} msgs=$msgs routed=$routed \
ir_per_msg=$per_msg ir_per_login=$per_login spin_base=${spin[base]} spin_idle=${spin[idle]} \
spin_throughput=${spin[throughput]} raw_ir_per_msg=$raw_per_msg"
  echo "$line" | tee -a "$OUT"
  LINES+=("$line")
  unset ir spin
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
med_msg="$(for l in "${LINES[@]}"; do field ir_per_msg "$l"; done | median)"
med_login="$(for l in "${LINES[@]}"; do field ir_per_login "$l"; done | median)"
echo "CALLGRIND tag=$TAG summary runs=$RUNS pairs=$PAIRS ir_per_msg=$med_msg ir_per_login=$med_login" \
  | tee -a "$OUT"
echo "$TAG: $med_msg instructions per routed message, $med_login per login (median of $RUNS run(s))"
