#!/usr/bin/env bash
# benches/upload.sh - XEP-0363 file upload against Prosody (mod_http_file_share), ejabberd
# (mod_http_upload) and kleiber, one server at a time: for each file size, a slot, a PUT and a
# GET (byte-compared) per round; prints the load generator's RESULT lines (MB/s each way and
# server CPU seconds per MB; see benches/load/upload.rs).
#
# Usage:  benches/upload.sh
#         SIZES="1 50" ROUNDS=5 SERVERS="ejabberd kleiber" benches/upload.sh
# Peers from ../shared/peers/peers.sh (`apt-get install -y prosody ejabberd`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVERS="${SERVERS:-prosody ejabberd kleiber}"
SIZES="${SIZES:-1 50}"          # MiB per file
ROUNDS="${ROUNDS:-5}"           # uploads (and downloads) per size; medians reported
QUIET_WAIT="${QUIET_WAIT:-120}"
OUT="${OUT:-/tmp/kleiber-upload-$(date +%Y%m%d-%H%M%S).txt}"
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
WORK="$(mktemp -d /tmp/kleiber-upload.XXXXXX)"
FAILED=0

log() { echo "[upload $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

trap bench_cleanup EXIT
build
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) SIZES=$SIZES ROUNDS=$ROUNDS, $(nproc) CPUs" >> "$OUT"
for s in $SERVERS; do
  for other in $SERVERS; do [ "$other" = "$s" ] || stop_srv "$other" >/dev/null 2>&1; done
  start_srv "$s" || { echo "RESULT server=$s failed=1" >> "$OUT"; continue; }
  sleep 2
  wait_quiet
  pids="$(pids_srv "$s" | tr ' ' ',')"
  for mb in $SIZES; do
    # shellcheck disable=SC2046 # target prints several words
    load "$s" $(target "$s") --upload "$mb" --repeat "$ROUNDS" --server-pid "$pids"
  done
  stop_srv "$s"
done
echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
