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

log() { echo "[component $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
one_at_a_time_defaults component

trap bench_cleanup EXIT
build
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) PAIRS=$PAIRS DURATION=$DURATION, $(nproc) CPUs" >> "$OUT"
measure() { # SERVER PIDS
  # shellcheck disable=SC2046 # target prints several words
  load "$1" $(target "$1") --pairs "$PAIRS" --register-only >/dev/null
  # shellcheck disable=SC2046
  load "$1" $(target "$1") $(component_target "$1") --pairs "$PAIRS" --duration "$DURATION" \
    --server-pid "$2"
}
each_server measure
