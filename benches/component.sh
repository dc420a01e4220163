#!/usr/bin/env bash
# benches/component.sh - external component (XEP-0114) throughput against Prosody, ejabberd and
# kleiber, one server at a time: the load generator connects as the component echo.DOMAIN
# (secret bench-secret, as ../shared/peers/ sets it up) and echoes every message; PAIRS clients
# each keep one message in flight through it. Prints the RESULT lines (round trips/s, latency,
# server CPU per 1,000 round trips; see benches/load/component.rs).
#
# Usage:  benches/component.sh
#         PAIRS=100 DURATION=20 SERVERS="ejabberd kleiber" benches/component.sh
# Peers from ../shared/peers/peers.sh (`apt-get install -y prosody ejabberd`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVERS="${SERVERS:-prosody ejabberd kleiber}"
PAIRS="${PAIRS:-100}"
DURATION="${DURATION:-20}"
QUIET_WAIT="${QUIET_WAIT:-120}"
OUT="${OUT:-/tmp/kleiber-component-$(date +%Y%m%d-%H%M%S).txt}"
PEERS="${PEERS:-$ROOT/../shared/peers/peers.sh}"
PEER_DOMAIN="${PEER_DOMAIN:-bench.test}"
PROSODY_PORT="${PROSODY_PORT:-5422}"
EJABBERD_PORT="${EJABBERD_PORT:-5322}"
KEEP="${KEEP:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
KLEIBER_CERT="${KLEIBER_CERT:-}"
KLEIBER_KEY="${KLEIBER_KEY:-}"
KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-localhost}"
LOAD_BIN="${LOAD_BIN:-}"
WORK="$(mktemp -d /tmp/kleiber-component.XXXXXX)"
FAILED=0

log() { echo "[component $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

trap bench_cleanup EXIT
build
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) PAIRS=$PAIRS DURATION=$DURATION, $(nproc) CPUs" >> "$OUT"
for s in $SERVERS; do
  for other in $SERVERS; do [ "$other" = "$s" ] || stop_srv "$other" >/dev/null 2>&1; done
  start_srv "$s" || { echo "RESULT server=$s failed=1" >> "$OUT"; continue; }
  sleep 2
  # shellcheck disable=SC2046 # target prints several words
  load "$s" $(target "$s") --pairs "$PAIRS" --register-only >/dev/null
  wait_quiet
  pids="$(pids_srv "$s" | tr ' ' ',')"
  # shellcheck disable=SC2046
  load "$s" $(target "$s") $(component_target "$s") --pairs "$PAIRS" --duration "$DURATION" \
    --server-pid "$pids"
  stop_srv "$s"
done
echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
