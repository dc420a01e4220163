#!/usr/bin/env bash
# benches/soak.sh - soak test and idle memory per session at scale: kleiber, Prosody and
# ejabberd, one server at a time, and print the RESULT lines.
#
# Idle memory (benches/load, --idle N): for each N in IDLE, on a freshly started server: its
# RSS, then N sessions log in (STARTTLS, SCRAM, bind, initial presence; 100 at a time) and stay
# idle; its RSS SETTLE s after the last login. RSS growth / sessions = KiB per session.
#
# Soak (benches/load, --soak N; see benches/load/soak.rs), on a freshly started server: N sessions
# log in, then RATE chat messages per second in all go from random sessions to random other
# ones for DURATION s; every message must arrive exactly once (lost, duplicated, unexpected,
# errors, stream errors and lost connections are counted). The server's RSS and CPU are sampled
# every SAMPLE s (SAMPLE lines, kept in $OUT too): RSS at the end of the first WARMUP s against
# RSS at the end, and the slope of a least-squares line through the samples after the warm-up,
# in KiB per minute.
#
# For each server: start, register the users (as many as the largest measurement needs), stop;
# then each measurement on a freshly started server (MODES: idle, then soak).
#
# kleiber: release build, config as resume_storm.sh's (every abuse limit off, though clients on
# loopback are exempt anyway; SCRAM 4,096 iterations; STARTTLS only; the peers' RSA-2048
# certificate for bench.test unless KLEIBER_CERT=), with limits.max_connections raised to 1,000
# more than the most sessions (its default, 10,000, leaves no room above 10,000 clients).
# Prosody 0.12 and ejabberd 23.01: the shared peers' benchmark configs (../shared/peers/peers.sh).
#
# Usage:  benches/soak.sh                       # 10,000 sessions, 1,000 msg/s, 30 min each
#         SERVERS=kleiber N=1000 IDLE=1000 DURATION=120 WARMUP=30 SAMPLE=10 benches/soak.sh
#         MODES=idle IDLE="1000 10000" benches/soak.sh       # idle memory only
#         SKIP_BUILD=1 LOAD_BIN=/path/to/load KLEIBER_BIN=/path/to/kleiber benches/soak.sh
# Every upper-case variable below can be set from the environment. kleiber's runtime files
# (config, data, log) go to a fresh directory /tmp/kleiber-soak.XXXXXX, removed at the end
# unless KEEP=1 or something failed. Run it as root (or with a high enough `ulimit -Hn`):
# 10,000 sessions need 10,000 file descriptors in the generator and in the server.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

SERVERS="${SERVERS:-kleiber prosody ejabberd}"
MODES="${MODES:-idle soak}"          # idle: idle memory; soak: the soak
N="${N:-10000}"                      # soak: sessions
RATE="${RATE:-1000}"                 # soak: messages per second, in all
DURATION="${DURATION:-1800}"         # soak: seconds of messages
# soak: seconds after which the RSS is the reference (600 for 30-minute runs: past the step of
# ~700 bytes per session kleiber had until cd4323b, ~500,000 messages in; see BASELINE.md, soak)
WARMUP="${WARMUP:-$(( DURATION >= 1800 ? 600 : DURATION / 4 ))}"
SAMPLE="${SAMPLE:-30}"               # soak: seconds between samples of the server's RSS and CPU
DRAIN="${DRAIN:-30}"                 # soak: seconds to wait for the last messages
IDLE="${IDLE:-1000 10000}"           # idle memory: session counts, one fresh server each
SETTLE="${SETTLE:-3}"                # idle: s after the last login before the RSS is read
CONCURRENCY="${CONCURRENCY:-100}"    # logins in progress at once
MECH="${MECH:-SCRAM-SHA-1}"          # PLAIN | SCRAM-SHA-1 | SCRAM-SHA-256
PREFIX="${PREFIX:-soak}"             # user names PREFIX0..
LOAD_ARGS="${LOAD_ARGS:-}"           # extra arguments for every load run (e.g. --body-size 200)
QUIET_WAIT="${QUIET_WAIT:-300}"      # before each run, wait up to this many s for an idle machine
KEEP="${KEEP:-0}"                    # 1: keep kleiber's runtime directory
SKIP_BUILD="${SKIP_BUILD:-0}"        # 1: use the existing binaries
OUT="${OUT:-/tmp/kleiber-soak-$(date +%Y%m%d-%H%M%S).txt}"

PEERS="${PEERS:-$ROOT/../shared/peers/peers.sh}"
PROSODY_PORT="${PROSODY_PORT:-5422}"
EJABBERD_PORT="${EJABBERD_PORT:-5322}"
PEER_DOMAIN="${PEER_DOMAIN:-bench.test}"
KLEIBER_BIN="${KLEIBER_BIN:-$ROOT/target/release/kleiber}"
KLEIBER_CERT="${KLEIBER_CERT-$(dirname "$PEERS")/certs/bench.test.crt}" # empty: self-signed
KLEIBER_KEY="${KLEIBER_KEY-$(dirname "$PEERS")/certs/bench.test.key}"
if [ -n "$KLEIBER_CERT" ]; then
  KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-bench.test}"
else
  KLEIBER_DOMAIN="${KLEIBER_DOMAIN:-localhost}"
fi
LOAD_BIN="${LOAD_BIN:-}"             # empty: built with cargo bench --bench load --no-run

WORK="$(mktemp -d /tmp/kleiber-soak.XXXXXX)"
FAILED=0

log() { echo "[soak $(date +%H:%M:%S)] $*" >&2; }
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"  # busy_pct, wait_quiet, build, kleiber_start, start_srv, load, ...

USERS=0 # sessions of the largest measurement: the users to register
case " $MODES " in *" soak "*) USERS="$N" ;; esac
case " $MODES " in *" idle "*) for i in $IDLE; do [ "$i" -gt "$USERS" ] && USERS="$i"; done ;; esac
KLEIBER_LIMITS="max_connections = $(( USERS + 1000 > 10000 ? USERS + 1000 : 10000 ))"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

common() { # the load generator's arguments for server $1
  # shellcheck disable=SC2046,SC2086 # target prints several words; LOAD_ARGS is split on purpose
  echo $(target "$1") --mech "$MECH" --user-prefix "$PREFIX" --concurrency "$CONCURRENCY" \
    --login-timeout 1800 $LOAD_ARGS
}

fresh() { # fresh SERVER: start it, let it settle, wait for a quiet machine
  start_srv "$1" || return 1
  sleep 2
  wait_quiet
}

bench_server() {
  local s="$1" n
  log "=== $s: registering $USERS users"
  start_srv "$s" || return 1
  # shellcheck disable=SC2046
  load "$s" $(common "$s") --idle "$USERS" --register-only >/dev/null || true
  stop_srv "$s"
  case " $MODES " in *" idle "*)
    for n in $IDLE; do
      log "=== $s: idle memory, $n sessions"
      fresh "$s" || return 1
      # shellcheck disable=SC2046
      load "$s" $(common "$s") --idle "$n" --settle "$SETTLE" --server-pid "$(pids_srv "$s")"
      stop_srv "$s"
    done ;;
  esac
  case " $MODES " in *" soak "*)
    log "=== $s: soak, $N sessions, $RATE msg/s, $DURATION s (warm-up $WARMUP s)"
    fresh "$s" || return 1
    # shellcheck disable=SC2046
    load "$s" $(common "$s") --soak "$N" --rate "$RATE" --duration "$DURATION" \
      --warmup "$WARMUP" --sample-secs "$SAMPLE" --drain-secs "$DRAIN" \
      --server-pid "$(pids_srv "$s")"
    stop_srv "$s" ;;
  esac
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # N sockets in the generator and in kleiber
if [ "$(ulimit -n)" -lt $(( USERS + 1000 )) ]; then
  log "ulimit -n is $(ulimit -n): too low for $USERS sessions (run as root or raise ulimit -Hn)"
  exit 1
fi
read -r PORT_LO PORT_HI < /proc/sys/net/ipv4/ip_local_port_range
if [ $(( PORT_HI - PORT_LO )) -lt $(( USERS + 1000 )) ]; then
  log "net.ipv4.ip_local_port_range ($PORT_LO-$PORT_HI) is too small for $USERS connections"
  exit 1
fi
build
log "results also go to $OUT"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) MODES=$MODES N=$N RATE=$RATE DURATION=$DURATION WARMUP=$WARMUP SAMPLE=$SAMPLE IDLE=$IDLE MECH=$MECH"
  echo "# $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# kleiber $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?'), $KLEIBER_BIN"
  echo "# $(dpkg-query -W -f='${Package} ${Version}  ' prosody ejabberd 2>/dev/null || true)"; } >> "$OUT"
for s in $SERVERS; do
  bench_server "$s" || { log "$s: skipped (could not start)"; FAILED=1; echo "RESULT server=$s failed=1" >> "$OUT"; }
done

echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
