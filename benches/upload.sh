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

log() { echo "[upload $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
one_at_a_time_defaults upload

trap bench_cleanup EXIT
build
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) SIZES=$SIZES ROUNDS=$ROUNDS, $(nproc) CPUs" >> "$OUT"
measure() { # SERVER PIDS
  local mb
  for mb in $SIZES; do
    # shellcheck disable=SC2046 # target prints several words
    load "$1" $(target "$1") --upload "$mb" --repeat "$ROUNDS" --server-pid "$2"
  done
}
each_server measure
