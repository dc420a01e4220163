#!/usr/bin/env bash
# benches/compare.sh - run the load generator (benches/load.rs) against Prosody, ejabberd and
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
PEER_HOST="${PEER_HOST:-127.0.0.1}"
PEER_DOMAIN="${PEER_DOMAIN:-bench.test}"
PROSODY_PORT="${PROSODY_PORT:-5422}"
EJABBERD_PORT="${EJABBERD_PORT:-5322}"

# kleiber
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
KLEIBER_CONFIG="${KLEIBER_CONFIG:-}"   # empty: write $KLEIBER_RUN/kleiber.toml (see kleiber_config)
KLEIBER_RUN="${KLEIBER_RUN:-/tmp/kleiber-bench}"   # working directory (data, log)
KLEIBER_HOST="${KLEIBER_HOST:-127.0.0.1}"
KLEIBER_PORT="${KLEIBER_PORT:-5222}"
KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-localhost}"
KLEIBER_ARGS="${KLEIBER_ARGS:-}"       # extra arguments for `kleiber serve`

# The load generator: built once (cargo bench --no-run), then run directly, so that runs do not
# wait for cargo's build lock.
LOAD_BIN="${LOAD_BIN:-}"

log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }

build_load() {
  [ -n "$LOAD_BIN" ] && return
  log "building the load generator (cargo bench --bench load --no-run)"
  local out
  out="$(cd "$ROOT" && cargo bench --bench load --no-run 2>&1)" || { echo "$out" >&2; exit 1; }
  LOAD_BIN="$(echo "$out" | grep -o '[^ (]*/deps/load-[0-9a-f]*' | tail -1)"
  case "$LOAD_BIN" in /*) ;; *) LOAD_BIN="$ROOT/$LOAD_BIN" ;; esac
  [ -x "$LOAD_BIN" ] || { echo "load generator not found in cargo output:" >&2; echo "$out" >&2; exit 1; }
}

# Busy percentage of the whole machine over 2 s (100 = all CPUs busy), from /proc/stat.
busy_pct() {
  local a b total=0 i idle
  read -r -a a < /proc/stat; sleep 2; read -r -a b < /proc/stat
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  idle=$(( b[4] - a[4] + b[5] - a[5] ))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# The numbers are only worth something on an otherwise idle machine (2 cores: a compile next
# door halves them). Wait for one; the RESULT lines also carry other_cpu_pct to check.
wait_quiet() {
  local end=$(( SECONDS + QUIET_WAIT )) b
  while b="$(busy_pct)"; [ "$b" -ge 10 ]; do
    if [ "$SECONDS" -ge "$end" ]; then log "machine still ${b}% busy, measuring anyway"; return; fi
    log "machine ${b}% busy, waiting"
  done
}

# --- server control: start_X / stop_X / pids_X -------------------------------------------------

peer_start() { "$PEERS" "$1" start >&2; }
peer_stop() { "$PEERS" "$1" stop >&2 || true; }
peer_pids() { "$PEERS" "$1" pids; }

# A config like the peers': SCRAM with 4,096 iterations, open in-band registration, STARTTLS
# only, self-signed certificate generated into the data directory (keys: config.example.toml).
kleiber_config() {
  cat <<EOF
data_dir = "$KLEIBER_RUN/data"
[hosts."$KLEIBER_DOMAIN"]
[listen]
c2s_starttls = ["$KLEIBER_HOST:$KLEIBER_PORT"]
c2s_direct_tls = []
s2s = []
[registration]
open = true
[auth]
scram_iterations = 4096
[limits]
registrations_per_address_per_hour = 0
registrations_per_hour = 0
max_unauthenticated_per_address = 0
max_bytes_per_second = 0
stranger_messages_per_hour = 0
EOF
}

KLEIBER_PID=""
kleiber_start() {
  [ -x "$KLEIBER_BIN" ] || { log "no kleiber binary at $KLEIBER_BIN (cargo build --release)"; return 1; }
  if (exec 3<>"/dev/tcp/$KLEIBER_HOST/$KLEIBER_PORT") 2>/dev/null; then
    log "port $KLEIBER_PORT is already in use (another kleiber?)"; return 1
  fi
  mkdir -p "$KLEIBER_RUN"
  local cfg="$KLEIBER_CONFIG"
  if [ -z "$cfg" ]; then cfg="$KLEIBER_RUN/kleiber.toml"; kleiber_config > "$cfg"; fi
  # shellcheck disable=SC2086
  (cd "$KLEIBER_RUN" && exec "$KLEIBER_BIN" serve --config "$cfg" $KLEIBER_ARGS) \
    >> "$KLEIBER_RUN/kleiber.log" 2>&1 &
  KLEIBER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$KLEIBER_HOST/$KLEIBER_PORT") 2>/dev/null && [ -d "/proc/$KLEIBER_PID" ]; then
      log "kleiber started pid $KLEIBER_PID"; return 0
    fi
    [ -d "/proc/$KLEIBER_PID" ] || break
    sleep 0.1
  done
  log "kleiber did not open port $KLEIBER_PORT; last lines of $KLEIBER_RUN/kleiber.log:"
  tail -n 20 "$KLEIBER_RUN/kleiber.log" >&2
  kleiber_stop
  return 1
}
kleiber_stop() {
  [ -n "$KLEIBER_PID" ] || return 0
  if [ -d "/proc/$KLEIBER_PID" ]; then
    kill "$KLEIBER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$KLEIBER_PID" ] || break; sleep 0.1; done
    if [ -d "/proc/$KLEIBER_PID" ]; then kill -9 "$KLEIBER_PID" 2>/dev/null || true; fi
  fi
  wait "$KLEIBER_PID" 2>/dev/null || true
  KLEIBER_PID=""
  log "kleiber stopped"
}
kleiber_pids() { echo "$KLEIBER_PID"; }

start_srv() { case "$1" in kleiber) kleiber_start ;; *) peer_start "$1" ;; esac; }
stop_srv() { case "$1" in kleiber) kleiber_stop ;; *) peer_stop "$1" ;; esac; }
pids_srv() { case "$1" in kleiber) kleiber_pids ;; *) peer_pids "$1" ;; esac; }

pid_arg() { # --server-pid PIDS, or nothing (and a warning) if they are unknown
  local p
  p="$(pids_srv "$1" 2>/dev/null || true)"
  if [ -n "$p" ]; then echo "--server-pid $p"; else log "$1: no pids, no RSS/CPU figures"; fi
}

# --- one server ----------------------------------------------------------------------------------

load() { # load SERVER ARGS...: run the generator, keep its RESULT line
  local s="$1"; shift
  local line
  log "$s: load $*"
  line="$("$LOAD_BIN" --label "$s" "$@" | grep '^RESULT' || true)"
  if [ -z "$line" ]; then line="RESULT server=$s failed=1 args=$(echo "$*" | tr ' ' '_')"; fi
  echo "$line" | tee -a "$OUT"
}

bench_server() {
  local s="$1" host port domain
  case "$s" in
    prosody) host="$PEER_HOST"; port="$PROSODY_PORT"; domain="$PEER_DOMAIN" ;;
    ejabberd) host="$PEER_HOST"; port="$EJABBERD_PORT"; domain="$PEER_DOMAIN" ;;
    kleiber) host="$KLEIBER_HOST"; port="$KLEIBER_PORT"; domain="$KLEIBER_DOMAIN" ;;
    *) log "unknown server $s"; return 1 ;;
  esac
  # shellcheck disable=SC2206 # LOAD_ARGS is split into words on purpose
  local common=(--host "$host" --port "$port" --domain "$domain" --mech "$MECH" $LOAD_ARGS)
  local users=$(( IDLE > 2 * PAIRS ? IDLE : 2 * PAIRS ))

  log "=== $s: registering $users users"
  start_srv "$s" || return 1
  load "$s" "${common[@]}" --register-only --idle "$users" --login-timeout 900 >/dev/null || true
  stop_srv "$s"

  log "=== $s: idle memory, $IDLE sessions"
  start_srv "$s" || return 1
  sleep 2 # let the server finish starting up before the RSS baseline is taken
  wait_quiet
  # shellcheck disable=SC2046 # pid_arg prints zero or two words
  load "$s" "${common[@]}" --idle "$IDLE" $(pid_arg "$s")
  stop_srv "$s"

  local run
  for run in $(seq 1 "$RUNS"); do
    log "=== $s: throughput, $PAIRS pairs, $DURATION s (run $run of $RUNS)"
    start_srv "$s" || return 1
    sleep 2
    wait_quiet
    # shellcheck disable=SC2046
    load "$s" "${common[@]}" --pairs "$PAIRS" --duration "$DURATION" $(pid_arg "$s")
    stop_srv "$s"
  done
}

cleanup() { kleiber_stop; }
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 2 * PAIRS / IDLE sockets in one process
build_load
log "results also go to $OUT"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) PAIRS=$PAIRS DURATION=$DURATION IDLE=$IDLE MECH=$MECH"
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
