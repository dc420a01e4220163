#!/usr/bin/env bash
# benches/resume_storm.sh - reconnect-and-resume storm (XEP-0198): kleiber against Prosody, one
# server at a time, and print the RESULT lines.
#
# N sessions log in and enable stream management with resumption; their TCP connections are
# then all cut at once (RST, no </stream:stream>) and every client reconnects, authenticates
# and resumes, CONCURRENCY at a time (benches/load.rs --resume-storm; see its doc comment).
# Measured: time from the cut until the last <resumed/>, resumed/failed, server CPU and RSS.
#
# For each server: start, register the users, stop; then for each CONCURRENCY, RUNS times:
# start a fresh server, the storm, stop.
#
# kleiber: release build, compare.sh's config (every abuse limit off, SCRAM 4,096 iterations,
# STARTTLS) with limits.sm_resume_timeout_secs = 300 (the default) written out, default log
# level (info), and by default the same certificate as Prosody (the peers' RSA-2048 one for
# bench.test): every resumption is a full TLS handshake, whose cost depends on the key type
# (KLEIBER_CERT= : kleiber's own self-signed ECDSA P-256 certificate for localhost instead).
# Prosody 0.12: the shared peers' benchmark config (../shared/peers/peers.sh; mod_smacks
# enabled, smacks_hibernation_time at its default of 600 s).
#
# Usage:  benches/resume_storm.sh
#         SERVERS=kleiber N=100 CONCURRENCY=100 RUNS=1 benches/resume_storm.sh   # a quick run
#         SKIP_BUILD=1 LOAD_BIN=/path/to/load KLEIBER_BIN=/path/to/kleiber benches/resume_storm.sh
# Every upper-case variable below can be set from the environment. kleiber's runtime files
# (config, data, log) go to a fresh directory /tmp/kleiber-storm.XXXXXX, removed at the end
# unless KEEP=1 or something failed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

SERVERS="${SERVERS:-kleiber prosody}"
N="${N:-1000}"                       # sessions
CONCURRENCY="${CONCURRENCY:-100 1000}" # logins (and resumptions) in flight; one series each
RUNS="${RUNS:-3}"                    # storms per server and concurrency (fresh server each)
MESSAGE="${MESSAGE:-1}"              # 1: --storm-message (one message each to send again)
SETTLE="${SETTLE:-3}"                # seconds between the set-up and the cut
MECH="${MECH:-SCRAM-SHA-1}"          # PLAIN | SCRAM-SHA-1 | SCRAM-SHA-256
PREFIX="${PREFIX:-storm}"            # user names PREFIX0..PREFIX{N-1}
LOAD_ARGS="${LOAD_ARGS:-}"           # extra arguments for every load run
QUIET_WAIT="${QUIET_WAIT:-300}"      # before each run, wait up to this many s for an idle machine
KEEP="${KEEP:-0}"                    # 1: keep kleiber's runtime directory
SKIP_BUILD="${SKIP_BUILD:-0}"        # 1: use the existing binaries
OUT="${OUT:-/tmp/kleiber-storm-$(date +%Y%m%d-%H%M%S).txt}"

PEERS="${PEERS:-$ROOT/../shared/peers/peers.sh}"
PROSODY_PORT="${PROSODY_PORT:-5422}"
PROSODY_DOMAIN="${PROSODY_DOMAIN:-bench.test}"
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
KLEIBER_CERT="${KLEIBER_CERT-$(dirname "$PEERS")/certs/bench.test.crt}" # empty: self-signed
KLEIBER_KEY="${KLEIBER_KEY-$(dirname "$PEERS")/certs/bench.test.key}"
if [ -n "$KLEIBER_CERT" ]; then
  KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-bench.test}"
else
  KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-localhost}"
fi
LOAD_BIN="${LOAD_BIN:-}"             # empty: built with cargo bench --bench load --no-run

WORK="$(mktemp -d /tmp/kleiber-storm.XXXXXX)"
FAILED=0

log() { echo "[storm $(date +%H:%M:%S)] $*" >&2; }
. "$(dirname "$0")/lib.sh"  # busy_pct, wait_quiet, build

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! ss -ltnH "( sport = :$p )" 2>/dev/null | grep -q . && ! port_open "$p"; then echo "$p"; return; fi
  done
}

# --- servers -------------------------------------------------------------------------------------

KLEIBER_PID=""
KLEIBER_PORT=""
kleiber_start() {
  KLEIBER_PORT="$(free_port)"
  mkdir -p "$WORK/kleiber"
  local cert=""
  [ -n "$KLEIBER_CERT" ] && cert="certificate = \"$KLEIBER_CERT\"
key = \"$KLEIBER_KEY\""
  cat > "$WORK/kleiber/kleiber.toml" <<EOF
data_dir = "$WORK/kleiber/data"
[hosts."$KLEIBER_DOMAIN"]
$cert
[listen]
c2s_starttls = ["127.0.0.1:$KLEIBER_PORT"]
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
sm_resume_timeout_secs = 300
EOF
  (cd "$WORK/kleiber" && exec "$KLEIBER_BIN" serve --config "$WORK/kleiber/kleiber.toml") \
    >> "$WORK/kleiber/kleiber.log" 2>&1 &
  KLEIBER_PID=$!
  for _ in $(seq 1 100); do
    if port_open "$KLEIBER_PORT" && [ -d "/proc/$KLEIBER_PID" ]; then
      log "kleiber started, pid $KLEIBER_PID, port $KLEIBER_PORT"; return 0
    fi
    [ -d "/proc/$KLEIBER_PID" ] || break
    sleep 0.1
  done
  log "kleiber did not open port $KLEIBER_PORT; last lines of its log:"
  tail -n 20 "$WORK/kleiber/kleiber.log" >&2
  kleiber_stop
  return 1
}
kleiber_stop() {
  [ -n "$KLEIBER_PID" ] || return 0
  if [ -d "/proc/$KLEIBER_PID" ]; then
    kill "$KLEIBER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$KLEIBER_PID" ] || break; sleep 0.1; done
    if [ -d "/proc/$KLEIBER_PID" ]; then kill -9 "$KLEIBER_PID" 2>/dev/null || true; fi
  fi
  wait "$KLEIBER_PID" 2>/dev/null || true
  KLEIBER_PID=""
  log "kleiber stopped"
}

start_srv() {
  case "$1" in
    kleiber) kleiber_start ;;
    prosody)
      if "$PEERS" prosody status >/dev/null 2>&1; then
        log "Prosody is already running (someone else's?): not measuring it"; return 1
      fi
      "$PEERS" prosody start >&2 ;;
  esac
}
stop_srv() { case "$1" in kleiber) kleiber_stop ;; prosody) "$PEERS" prosody stop >&2 || true ;; esac; }
pids_srv() { case "$1" in kleiber) echo "$KLEIBER_PID" ;; prosody) "$PEERS" prosody pids ;; esac; }
target() { # host/port/domain arguments of the load generator
  case "$1" in
    kleiber) echo "--host 127.0.0.1 --port $KLEIBER_PORT --domain $KLEIBER_DOMAIN" ;;
    prosody) echo "--host 127.0.0.1 --port $PROSODY_PORT --domain $PROSODY_DOMAIN" ;;
  esac
}

cleanup() {
  local rc=$?
  kleiber_stop
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ] || [ "$rc" != 0 ]; then
    log "kleiber's runtime files kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load() { # load SERVER ARGS...: run the generator, keep its RESULT line
  local s="$1" line
  shift
  log "$s: load $*"
  line="$("$LOAD_BIN" --label "$s" "$@" | grep '^RESULT' || true)"
  if [ -z "$line" ]; then line="RESULT server=$s failed=1 args=$(echo "$*" | tr ' ' '_')"; FAILED=1; fi
  echo "$line" | tee -a "$OUT"
}

bench_server() {
  local s="$1" c run msg=()
  [ "$MESSAGE" = 1 ] && msg=(--storm-message)
  log "=== $s: registering $N users"
  start_srv "$s" || return 1
  # shellcheck disable=SC2046,SC2086 # target prints several words; LOAD_ARGS is split on purpose
  load "$s" $(target "$s") --mech "$MECH" --user-prefix "$PREFIX" --resume-storm "$N" \
    --register-only --concurrency 100 --login-timeout 900 $LOAD_ARGS >/dev/null || true
  stop_srv "$s"
  for c in $CONCURRENCY; do
    for run in $(seq 1 "$RUNS"); do
      log "=== $s: storm of $N sessions, $c at a time (run $run of $RUNS)"
      start_srv "$s" || return 1
      sleep 2
      wait_quiet
      # shellcheck disable=SC2046,SC2086
      load "$s" $(target "$s") --mech "$MECH" --user-prefix "$PREFIX" --resume-storm "$N" \
        --concurrency "$c" --settle "$SETTLE" "${msg[@]}" --server-pid "$(pids_srv "$s")" $LOAD_ARGS
      stop_srv "$s"
    done
  done
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # N sockets, and N more while they reconnect
build
log "results also go to $OUT"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) N=$N CONCURRENCY=$CONCURRENCY RUNS=$RUNS MESSAGE=$MESSAGE MECH=$MECH"
  echo "# $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"; } >> "$OUT"
for s in $SERVERS; do
  bench_server "$s" || { log "$s: skipped (could not start)"; FAILED=1; echo "RESULT server=$s failed=1" >> "$OUT"; }
done

echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
