#!/usr/bin/env bash
# benches/federation.sh - federation (server-to-server) throughput: two kleiber instances
# against two Prosody instances, one pair of servers at a time, and print the RESULT lines.
#
# Each pair serves a.test and b.test on loopback, with static routes to each other (kleiber:
# [s2s.routes]; Prosody only knows DNS, so tests/interop/prosody/mod_test_s2s_routes.lua does
# the same for it). Certificates are self-signed on both sides (kleiber generates its own,
# Prosody's come from openssl), so the links authenticate with dialback, STARTTLS required.
# The load generator (benches/load/, federation mode: --peer-port) logs users 0..PAIRS-1 in
# on a.test and users PAIRS..2*PAIRS-1 on b.test; user i and user i+PAIRS ping-pong chat
# messages, so every message crosses the server-to-server links.
#
# For each server kind: start the pair, register the users (each on its own server), stop;
# then RUNS times: start a fresh pair, WARMUP s of unmeasured ping-pong (the s2s links come up),
# DURATION s measured, stop. Server CPU and RSS are of both processes, summed (per pid too).
#
# Usage:  benches/federation.sh
#         SERVERS=prosody PAIRS=20 DURATION=5 RUNS=1 benches/federation.sh   # a quick run
#         SKIP_BUILD=1 LOAD_BIN=/path/to/load benches/federation.sh
# Every upper-case variable below can be set from the environment. Runtime files (configs,
# data, logs) go to a fresh directory /tmp/kleiber-federation.XXXXXX, removed at the end unless
# KEEP=1 or something failed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

SERVERS="${SERVERS:-kleiber prosody}"
PAIRS="${PAIRS:-100}"           # 2*PAIRS connections, half on each server
DURATION="${DURATION:-20}"      # measured seconds per run
WARMUP="${WARMUP:-5}"           # unmeasured seconds before (s2s link set-up)
RUNS="${RUNS:-2}"               # throughput runs per server kind (fresh processes each)
MECH="${MECH:-SCRAM-SHA-1}"     # PLAIN | SCRAM-SHA-1 | SCRAM-SHA-256
LOAD_ARGS="${LOAD_ARGS:-}"      # extra arguments for every load run (e.g. --body-size 200)
QUIET_WAIT="${QUIET_WAIT:-120}" # before each run, wait up to this many s for an idle machine
KEEP="${KEEP:-0}"               # 1: keep the runtime directory
SKIP_BUILD="${SKIP_BUILD:-0}"   # 1: use the existing binaries
OUT="${OUT:-/tmp/kleiber-federation-$(date +%Y%m%d-%H%M%S).txt}"

DOMAIN_A="${DOMAIN_A:-a.test}"
DOMAIN_B="${DOMAIN_B:-b.test}"
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
PROSODY_BIN="${PROSODY_BIN:-/usr/bin/prosody}"
PROSODY_PLUGINS="${PROSODY_PLUGINS:-$ROOT/tests/interop/prosody}" # mod_test_s2s_routes.lua
PROSODY_LOG="${PROSODY_LOG:-warn}" # Prosody's log level (info shows the s2s links)
LOAD_BIN="${LOAD_BIN:-}"        # empty: built with cargo bench --bench load --no-run
export RUST_LOG="${RUST_LOG:-info,sled=warn}"

WORK="$(mktemp -d /tmp/kleiber-federation.XXXXXX)"
FAILED=0

log() { echo "[federation $(date +%H:%M:%S)] $*" >&2; }
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"  # busy_pct, wait_quiet, build, port_open, free_port

# --- processes -----------------------------------------------------------------------------------

PIDS=() # processes started by this script (servers), ended by stop_all / on exit

stop_pid() {
  local p="$1"
  [ -d "/proc/$p" ] || { wait "$p" 2>/dev/null || true; return 0; }
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  if [ -d "/proc/$p" ]; then log "pid $p did not stop, killing it"; kill -9 "$p" 2>/dev/null || true; fi
  wait "$p" 2>/dev/null || true
}

stop_all() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}

cleanup() {
  local rc=$?
  stop_all
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ] || [ "$rc" != 0 ]; then
    log "runtime files (configs, logs) kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ports() { # wait_ports NAME PID LOGFILE PORT...: until every port accepts connections
  local name="$1" pid="$2" logf="$3" p ok
  shift 3
  for _ in $(seq 1 200); do
    [ -d "/proc/$pid" ] || { log "$name exited at start; last lines of $logf:"; tail -n 30 "$logf" >&2; return 1; }
    ok=1
    for p in "$@"; do port_open "$p" || { ok=0; break; }; done
    if [ "$ok" = 1 ]; then log "$name started, pid $pid, ports $*"; return 0; fi
    sleep 0.1
  done
  log "$name did not open ports $*; last lines of $logf:"; tail -n 30 "$logf" >&2
  return 1
}

# --- build ---------------------------------------------------------------------------------------

# --- kleiber pair --------------------------------------------------------------------------------

# Ports of the current pair: C2S_A S2S_A C2S_B S2S_B (fresh for every start).
C2S_A=0; S2S_A=0; C2S_B=0; S2S_B=0
SERVER_PIDS=""

new_ports() { C2S_A=$(free_port); S2S_A=$(free_port); C2S_B=$(free_port); S2S_B=$(free_port); }

# As compare.sh: SCRAM with 4,096 iterations, open in-band registration, STARTTLS only, every
# abuse limit off, self-signed certificate generated into the data directory; plus an s2s port
# and a static route to the other server.
kleiber_config() { # kleiber_config DIR DOMAIN C2S S2S OTHER_DOMAIN OTHER_S2S
  cat <<EOF
data_dir = "$1/data"
[hosts."$2"]
[listen]
c2s_starttls = ["127.0.0.1:$3"]
c2s_direct_tls = []
s2s = ["127.0.0.1:$4"]
s2s_direct_tls = []
[http]
listen = []
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
[s2s]
enabled = true
require_encryption = true
require_valid_certificates = false
[s2s.routes]
"$5" = "127.0.0.1:$6"
EOF
}

kleiber_one() { # kleiber_one NAME DOMAIN C2S S2S OTHER_DOMAIN OTHER_S2S; sets LAST_PID
  local d="$WORK/kleiber-$1"
  mkdir -p "$d"
  kleiber_config "$d" "$2" "$3" "$4" "$5" "$6" > "$d/kleiber.toml"
  (cd "$d" && exec "$KLEIBER_BIN" serve --config "$d/kleiber.toml") >> "$d/kleiber.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_ports "kleiber $2" "$LAST_PID" "$d/kleiber.log" "$3" "$4"
}

kleiber_pair_start() {
  new_ports
  local a b
  kleiber_one a "$DOMAIN_A" "$C2S_A" "$S2S_A" "$DOMAIN_B" "$S2S_B" || return 1
  a=$LAST_PID
  kleiber_one b "$DOMAIN_B" "$C2S_B" "$S2S_B" "$DOMAIN_A" "$S2S_A" || return 1
  b=$LAST_PID
  SERVER_PIDS="$a,$b"
}

# --- Prosody pair --------------------------------------------------------------------------------

# The shared peers' benchmark config (../shared/peers/configs/prosody.cfg.lua: same modules, no
# mod_limits shaper, Nagle off, open registration without throttling, 4,096 SCRAM iterations,
# warn-level log) plus s2s as in tests/interop_prosody.rs: dialback, STARTTLS required,
# self-signed certificates accepted (s2s_secure_auth = false), static route to the other one.
prosody_config() { # prosody_config DIR DOMAIN C2S S2S OTHER_DOMAIN OTHER_S2S
  cat <<EOF
admins = { }
plugin_paths = { "$PROSODY_PLUGINS" }
modules_enabled = {
	"disco"; "roster"; "saslauth"; "tls"; "blocklist"; "bookmarks"; "carbons";
	"pep"; "private"; "smacks"; "vcard4"; "vcard_legacy"; "csi_simple";
	"ping"; "register"; "time"; "uptime"; "version";
	"dialback"; "test_s2s_routes";
}
run_as_root = true
pidfile = "$1/prosody.pid"
data_path = "$1/data"
log = { $PROSODY_LOG = "$1/prosody.log" }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $3 }
s2s_ports = { $4 }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }

c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"

allow_registration = true
registration_whitelist = { "127.0.0.1", "::1" }
whitelist_registration_only = false
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
registration_throttle_period = 1

network_backend = "epoll"
network_settings = { nagle = false }

test_s2s_routes = { ["$5"] = { "127.0.0.1", $6 } }

VirtualHost "$2"
	ssl = { certificate = "$1/certs/$2.crt"; key = "$1/certs/$2.key"; }
EOF
}

prosody_one() { # prosody_one NAME DOMAIN C2S S2S OTHER_DOMAIN OTHER_S2S; sets LAST_PID
  local d="$WORK/prosody-$1"
  mkdir -p "$d/data" "$d/certs"
  if [ ! -s "$d/certs/$2.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
      -addext "subjectAltName=DNS:$2" -days 30 -keyout "$d/certs/$2.key" -out "$d/certs/$2.crt" 2>/dev/null
  fi
  prosody_config "$d" "$2" "$3" "$4" "$5" "$6" > "$d/prosody.cfg.lua"
  (cd "$d" && exec "$PROSODY_BIN" --config "$d/prosody.cfg.lua" -F) >> "$d/stdout.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_ports "prosody $2" "$LAST_PID" "$d/stdout.log" "$3" "$4"
}

prosody_pair_start() {
  new_ports
  local a b
  prosody_one a "$DOMAIN_A" "$C2S_A" "$S2S_A" "$DOMAIN_B" "$S2S_B" || return 1
  a=$LAST_PID
  prosody_one b "$DOMAIN_B" "$C2S_B" "$S2S_B" "$DOMAIN_A" "$S2S_A" || return 1
  b=$LAST_PID
  SERVER_PIDS="$a,$b"
}

pair_start() { stop_all; case "$1" in kleiber) kleiber_pair_start ;; prosody) prosody_pair_start ;; esac; }

server_logs() { # last lines of the pair's logs (after a failure)
  local f
  for f in "$WORK/$1"-a/*.log "$WORK/$1"-b/*.log; do
    [ -s "$f" ] || continue
    echo "--- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2
  done
}

# --- runs ----------------------------------------------------------------------------------------

load() { # load SERVER ARGS...: run the generator against the current pair, keep its RESULT line
  local s="$1" line
  shift
  # shellcheck disable=SC2206 # LOAD_ARGS is split into words on purpose
  local args=(--label "$s-fed" --host 127.0.0.1 --port "$C2S_A" --domain "$DOMAIN_A"
    --peer-port "$C2S_B" --peer-domain "$DOMAIN_B" --mech "$MECH" $LOAD_ARGS "$@")
  log "$s: load ${args[*]}"
  line="$("$LOAD_BIN" "${args[@]}" | grep '^RESULT' || true)"
  if [ -z "$line" ]; then
    line="RESULT server=$s-fed failed=1 args=$(echo "$*" | tr ' ' '_')"
  fi
  case "$line" in
    *" failed="[1-9]*|*" errors="[1-9]*|*" msgs=0 "*|*" undelivered="[1-9]*)
      FAILED=1; log "$s: the run had problems; server logs:"; server_logs "$s" ;;
  esac
  echo "$line" | tee -a "$OUT"
}

bench_kind() {
  local s="$1" run
  log "=== $s: registering $(( 2 * PAIRS )) users ($PAIRS on $DOMAIN_A, $PAIRS on $DOMAIN_B)"
  pair_start "$s" || return 1
  load "$s" --pairs "$PAIRS" --register-only --login-timeout 900 >/dev/null
  stop_all
  for run in $(seq 1 "$RUNS"); do
    log "=== $s: federation throughput, $PAIRS pairs, ${WARMUP}+${DURATION} s (run $run of $RUNS)"
    pair_start "$s" || return 1
    sleep 2 # let both servers finish starting up
    wait_quiet
    load "$s" --pairs "$PAIRS" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PIDS"
    stop_all
  done
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 2 * PAIRS sockets in one process
command -v ss >/dev/null || { log "needs ss (iproute2)"; exit 1; }
build
log "runtime files in $WORK; results also go to $OUT"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) federation PAIRS=$PAIRS DURATION=$DURATION WARMUP=$WARMUP RUNS=$RUNS MECH=$MECH"
  echo "# $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"; } >> "$OUT"

for s in $SERVERS; do
  case "$s" in
    kleiber) ;;
    prosody) [ -x "$PROSODY_BIN" ] || { log "no prosody at $PROSODY_BIN, skipped"; continue; } ;;
    *) log "unknown server kind $s (kleiber, prosody)"; continue ;;
  esac
  if ! bench_kind "$s"; then
    FAILED=1; log "$s: could not start a pair"; server_logs "$s"
    echo "RESULT server=$s-fed failed=1" >> "$OUT"
  fi
  stop_all
done

echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
