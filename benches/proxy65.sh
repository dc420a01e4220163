#!/usr/bin/env bash
# benches/proxy65.sh - XEP-0065 SOCKS5 bytestreams proxy against Prosody (mod_proxy65), ejabberd
# (mod_proxy65) and kleiber, one server at a time: per round, two users pair up at the proxy,
# the initiator activates and sends MB MiB to the target, which checks every byte; prints the
# load generator's RESULT lines (median MB/s and server CPU seconds per MB; see
# benches/load/proxy65.rs). kleiber runs with the proxy's bandwidth and size limits off (the
# peers have none).
#
# Usage:  benches/proxy65.sh
#         MB=50 ROUNDS=3 SERVERS="prosody kleiber" benches/proxy65.sh
# Peers from ../shared/peers/peers.sh (`apt-get install -y prosody ejabberd`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVERS="${SERVERS:-prosody ejabberd kleiber}"
MB="${MB:-200}"                 # MiB per transfer
ROUNDS="${ROUNDS:-5}"           # transfers per server; medians reported
QUIET_WAIT="${QUIET_WAIT:-120}"
OUT="${OUT:-/tmp/kleiber-proxy65-$(date +%Y%m%d-%H%M%S).txt}"

log() { echo "[proxy65 $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
one_at_a_time_defaults proxy65

# Appended to kleiber's config after [limits] (benches/lib.sh): the proxy on a free port,
# limits off.
KLEIBER_LIMITS="[proxy65]
listen = [\"127.0.0.1:$(free_port)\"]
max_bytes_per_second = 0
max_account_bytes_per_second = 0
max_transfer_mb = 0"

trap bench_cleanup EXIT
build
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) MB=$MB ROUNDS=$ROUNDS, $(nproc) CPUs" >> "$OUT"
measure() { # SERVER PIDS
  # shellcheck disable=SC2046 # target prints several words
  load "$1" $(target "$1") --proxy65 "$MB" --repeat "$ROUNDS" --server-pid "$2"
}
each_server measure
