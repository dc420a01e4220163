#!/usr/bin/env bash
# benches/muc.sh - group chat side by side: kleiber, Prosody and ejabberd, one server at a time,
# and print the RESULT lines (benches/load --muc N, see benches/load/muc.rs).
#
# For each server, freshly started: N + 2 users log in (registered first); a controller creates a
# room (configured for N + 10 occupants) and sends 20 messages of history; N occupants enter
# (CONCURRENCY at a time); a further user enters the full room REPEAT times (join time: every
# occupant's presence, 20 messages of history, the subject); then every occupant sends one
# message per second for DURATION s (N messages/s into the room; the N occupants count N * N deliveries/s).
# Reported: deliveries/s, the time from a send until the last occupant has it (p50/p99/max),
# server CPU per 1,000 deliveries, server RSS per occupant, the join time.
#
# kleiber: release build, compare.sh's config (abuse limits off, SCRAM 4,096 iterations,
# STARTTLS only, the peers' certificate for bench.test) with [muc] max_occupants raised to
# N + 10. Prosody 0.12 and ejabberd 23.01: the shared peers' configs (MUC at
# conference.bench.test, history 20, no archive unless PEERS_MAM=1).
#
# Usage:  benches/muc.sh                          # 500 occupants, 30 s
#         SERVERS=kleiber N=100 DURATION=10 benches/muc.sh
#         SKIP_BUILD=1 LOAD_BIN=/path/to/load KLEIBER_BIN=/path/to/kleiber benches/muc.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

SERVERS="${SERVERS:-kleiber prosody ejabberd}"
N="${N:-500}"                        # occupants
DURATION="${DURATION:-30}"           # seconds of messages
REPEAT="${REPEAT:-5}"                # joins into the full room (median reported)
CONCURRENCY="${CONCURRENCY:-50}"     # logins and entries in progress at once
SETTLE="${SETTLE:-3}"                # s after the logins and after the entries before the RSS is read
MECH="${MECH:-SCRAM-SHA-1}"
PREFIX="${PREFIX:-mucb}"
LOAD_ARGS="${LOAD_ARGS:-}"
QUIET_WAIT="${QUIET_WAIT:-300}"
KEEP="${KEEP:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT="${OUT:-/tmp/kleiber-muc-$(date +%Y%m%d-%H%M%S).txt}"

PEERS="${PEERS:-$ROOT/../shared/peers/peers.sh}"
PROSODY_PORT="${PROSODY_PORT:-5422}"
EJABBERD_PORT="${EJABBERD_PORT:-5322}"
PEER_DOMAIN="${PEER_DOMAIN:-bench.test}"
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
KLEIBER_CERT="${KLEIBER_CERT-$(dirname "$PEERS")/certs/bench.test.crt}"
KLEIBER_KEY="${KLEIBER_KEY-$(dirname "$PEERS")/certs/bench.test.key}"
if [ -n "$KLEIBER_CERT" ]; then
  KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-bench.test}"
else
  KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-localhost}"
fi
LOAD_BIN="${LOAD_BIN:-}"

WORK="$(mktemp -d /tmp/kleiber-muc.XXXXXX)"
FAILED=0

log() { echo "[muc $(date +%H:%M:%S)] $*" >&2; }
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

KLEIBER_LIMITS="max_connections = 10000
[muc]
max_occupants = $(( N + 10 ))"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

build
: > "$OUT"
for s in $SERVERS; do
  log "=== $s: $N occupants, $DURATION s"
  start_srv "$s" || { FAILED=1; continue; }
  sleep 2
  wait_quiet
  # shellcheck disable=SC2046,SC2086
  load "$s" $(target "$s") --mech "$MECH" --user-prefix "$PREFIX" --concurrency "$CONCURRENCY" \
    --register --muc "$N" --duration "$DURATION" --repeat "$REPEAT" --settle "$SETTLE" \
    --login-timeout 600 --server-pid "$(pids_srv "$s")" $LOAD_ARGS || FAILED=1
  stop_srv "$s"
done
log "results in $OUT"
cat "$OUT"
