#!/usr/bin/env bash
# benches/compare.sh - run the load generator (benches/load/) against Prosody, ejabberd and
# kleiber, one server at a time, and print the RESULT lines.
#
# For each server: start, register the users (XEP-0077), stop; start, idle-memory run, stop;
# start, throughput run, stop. (Fresh processes for the memory and the throughput figures:
# ejabberd keeps the memory of closed connections and Prosody's cost per message grows with
# its heap.)
#
# Prosody and ejabberd come from Debian's packages, run by ../shared/peers/peers.sh
# (see its README: `apt-get install -y prosody ejabberd` first).
#
# Usage:  benches/compare.sh                      # all three servers
#         SERVERS="prosody ejabberd" benches/compare.sh
#         PAIRS=50 DURATION=10 IDLE=200 benches/compare.sh      # a quick run
#         RUNS=3 benches/compare.sh                                # 3 throughput runs each
#         TRANSPORT=websocket benches/compare.sh    # clients over RFC 7395 WebSocket (HTTPS ports)
# Every upper-case variable below can be set from the environment.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

SERVERS="${SERVERS:-prosody ejabberd kleiber}"
PAIRS="${PAIRS:-250}"          # throughput: 2*PAIRS connections ping-ponging
DURATION="${DURATION:-30}"     # throughput: seconds
IDLE="${IDLE:-1000}"           # memory: idle sessions
MECH="${MECH:-SCRAM-SHA-1}"    # PLAIN | SCRAM-SHA-1 | SCRAM-SHA-256
LOAD_ARGS="${LOAD_ARGS:-}"     # extra arguments for every load run (e.g. --body-size 200)
RUNS="${RUNS:-1}"              # throughput runs per server (each on a freshly started server)
QUIET_WAIT="${QUIET_WAIT:-120}" # before each run, wait up to this many s for an idle machine
OUT="${OUT:-/tmp/kleiber-compare-$(date +%Y%m%d-%H%M%S).txt}"

# Peers (Prosody / ejabberd) as set up by the shared peers.sh.
PEERS="${PEERS:-$ROOT/../shared/peers/peers.sh}"
PEER_DOMAIN="${PEER_DOMAIN:-bench.test}"
PROSODY_PORT="${PROSODY_PORT:-5422}"
EJABBERD_PORT="${EJABBERD_PORT:-5322}"

KEEP="${KEEP:-0}"                # 1: keep kleiber's runtime directory
SKIP_BUILD="${SKIP_BUILD:-0}"    # 1: use the existing binaries

# kleiber: release build (built first unless SKIP_BUILD=1), on a free port, runtime files (config,
# data, log) in a fresh directory /tmp/kleiber-compare.XXXXXX, removed at the end unless KEEP=1 or
# something failed; config in benches/lib.sh (kleiber_start). Its own self-signed certificate for
# localhost unless KLEIBER_CERT/KLEIBER_KEY name one (then set KLEIBER_DOMAIN too).
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
KLEIBER_CERT="${KLEIBER_CERT:-}"
KLEIBER_KEY="${KLEIBER_KEY:-}"
KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-localhost}"
KLEIBER_LIMITS="${KLEIBER_LIMITS:-}"   # more lines for kleiber's [limits]

# The load generator: built once (cargo bench --no-run), then run directly, so that runs do not
# wait for cargo's build lock.
LOAD_BIN="${LOAD_BIN:-}"

WORK="$(mktemp -d /tmp/kleiber-compare.XXXXXX)"
FAILED=0

log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

pid_arg() { # --server-pid PIDS, or nothing (and a warning) if they are unknown
  local p
  p="$(pids_srv "$1" 2>/dev/null || true)"
  if [ -n "$p" ]; then echo "--server-pid $p"; else log "$1: no pids, no RSS/CPU figures"; fi
}

# --- one server ----------------------------------------------------------------------------------

common() { # the load generator's arguments for server $1 (once it runs: kleiber's port is new)
  # shellcheck disable=SC2046,SC2086 # target prints several words; LOAD_ARGS is split on purpose
  echo $(target "$1") --mech "$MECH" $LOAD_ARGS
}

bench_server() {
  local s="$1"
  local users=$(( IDLE > 2 * PAIRS ? IDLE : 2 * PAIRS ))

  log "=== $s: registering $users users"
  start_srv "$s" || return 1
  # shellcheck disable=SC2046 # common prints several words
  load "$s" $(common "$s") --register-only --idle "$users" --login-timeout 900 >/dev/null || true
  stop_srv "$s"

  log "=== $s: idle memory, $IDLE sessions"
  start_srv "$s" || return 1
  sleep 2 # let the server finish starting up before the RSS baseline is taken
  wait_quiet
  # shellcheck disable=SC2046 # common and pid_arg print several words
  load "$s" $(common "$s") --idle "$IDLE" $(pid_arg "$s")
  stop_srv "$s"

  local run
  for run in $(seq 1 "$RUNS"); do
    log "=== $s: throughput, $PAIRS pairs, $DURATION s (run $run of $RUNS)"
    start_srv "$s" || return 1
    sleep 2
    wait_quiet
    # shellcheck disable=SC2046
    load "$s" $(common "$s") --pairs "$PAIRS" --duration "$DURATION" $(pid_arg "$s")
    stop_srv "$s"
  done
}

trap bench_cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 2 * PAIRS / IDLE sockets in one process
build
log "results also go to $OUT"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) PAIRS=$PAIRS DURATION=$DURATION IDLE=$IDLE MECH=$MECH TRANSPORT=${TRANSPORT:-tcp}"
  echo "# $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"; } >> "$OUT"

for s in $SERVERS; do
  for other in $SERVERS; do # one server at a time
    [ "$other" = "$s" ] || stop_srv "$other" >/dev/null 2>&1
  done
  bench_server "$s" || { log "$s: skipped (could not start)"; echo "RESULT server=$s failed=1" >> "$OUT"; }
done

echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
