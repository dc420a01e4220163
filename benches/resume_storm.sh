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
PEER_DOMAIN="${PEER_DOMAIN:-${PROSODY_DOMAIN:-bench.test}}"
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
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"  # busy_pct, wait_quiet, build, kleiber_start, start_srv, load, ...

KLEIBER_LIMITS="sm_resume_timeout_secs = 300"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

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
