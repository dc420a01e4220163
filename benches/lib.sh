# Shell functions the benchmark scripts share (sourced by compare.sh, federation.sh,
# resume_storm.sh and soak.sh).
# They use the caller's log(), QUIET_WAIT, SKIP_BUILD, ROOT, KLEIBER_BIN and LOAD_BIN.
# shellcheck shell=bash

# Busy percentage of the whole machine over 2 s (100 = all CPUs busy), from /proc/stat.
busy_pct() {
  local a b total=0 i idle
  read -r -a a < /proc/stat; sleep 2; read -r -a b < /proc/stat
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  idle=$(( b[4] - a[4] + b[5] - a[5] ))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# 2 cores: a compile next door halves the figures. Wait for an idle machine (the RESULT lines
# carry other_cpu_pct to check).
wait_quiet() {
  local end=$(( SECONDS + QUIET_WAIT )) b
  while b="$(busy_pct)"; [ "$b" -ge 10 ]; do
    if [ "$SECONDS" -ge "$end" ]; then log "machine still ${b}% busy, measuring anyway"; return; fi
    log "machine ${b}% busy, waiting"
  done
}

build() {
  if [ "$SKIP_BUILD" != 1 ]; then
    log "building kleiber (cargo build --release --bin kleiber)"
    (cd "$ROOT" && cargo build --release --bin kleiber >&2)
  fi
  [ -x "$KLEIBER_BIN" ] || { log "no kleiber binary at $KLEIBER_BIN"; exit 1; }
  [ -n "$LOAD_BIN" ] && return
  log "building the load generator (cargo bench --bench load --no-run)"
  local out
  out="$(cd "$ROOT" && cargo bench --bench load --no-run 2>&1)" || { echo "$out" >&2; exit 1; }
  LOAD_BIN="$(echo "$out" | grep -o '[^ (]*/deps/load-[0-9a-f]*' | tail -1)"
  case "$LOAD_BIN" in /*) ;; *) LOAD_BIN="$ROOT/$LOAD_BIN" ;; esac
  [ -x "$LOAD_BIN" ] || { echo "load generator not found in cargo output:" >&2; echo "$out" >&2; exit 1; }
}

# --- one server at a time (compare.sh, resume_storm.sh, soak.sh) -------------------------------
# `each_server MEASURE`: for each of $SERVERS, the others stopped, start it, wait for a quiet
# machine, run `MEASURE SERVER PIDS` (PIDS comma-separated), stop it; then print the RESULT
# lines of $OUT (upload.sh, proxy65.sh).
each_server() {
  local s other pids
  for s in $SERVERS; do
    for other in $SERVERS; do [ "$other" = "$s" ] || stop_srv "$other" >/dev/null 2>&1; done
    start_srv "$s" || { echo "RESULT server=$s failed=1" >> "$OUT"; continue; }
    sleep 2
    wait_quiet
    pids="$(pids_srv "$s" | tr ' ' ',')"
    "$1" "$s" "$pids"
    stop_srv "$s"
  done
  echo
  echo "== RESULT lines (also in $OUT)"
  grep '^RESULT' "$OUT"
}

# The defaults of the variables below, for scripts that take them as they are (upload.sh,
# proxy65.sh): `one_at_a_time_defaults NAME` after sourcing this file.
one_at_a_time_defaults() {
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
  WORK="$(mktemp -d "/tmp/kleiber-$1.XXXXXX")"
  FAILED=0
}

# These also use the caller's WORK (runtime directory), OUT (results file), FAILED, PEERS
# (../shared/peers/peers.sh), PROSODY_PORT, EJABBERD_PORT, PEER_DOMAIN, KLEIBER_DOMAIN,
# KLEIBER_CERT and KLEIBER_KEY (empty: kleiber's own self-signed certificate), and
# KLEIBER_LIMITS (more lines for kleiber's [limits], may be unset) and KLEIBER_EXTRA (more
# sections at the end of kleiber's config, e.g. `[archive]`, may be unset).

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port no socket uses and not handed out before by this script, below the ephemeral range
# (the clients' ports: after a run with thousands of connections, thousands of them are still
# in TIME_WAIT, and a server cannot listen on one of those).
TAKEN=" "
free_port() {
  local p lo
  read -r lo _ < /proc/sys/net/ipv4/ip_local_port_range
  [ "$lo" -gt 12000 ] || lo=32768
  while :; do
    p=$(( 10000 + RANDOM % (lo - 10000) ))
    case "$TAKEN" in *" $p "*) continue ;; esac
    if ! ss -tanH "( sport = :$p )" 2>/dev/null | grep -q . && ! port_open "$p"; then
      TAKEN="$TAKEN$p "; echo "$p"; return
    fi
  done
}

# kleiber on a free port with compare.sh's config (every abuse limit off, SCRAM with 4,096
# iterations like the peers, open registration, STARTTLS only), data in $WORK/kleiber/data.
KLEIBER_PID=""
KLEIBER_PORT=""
kleiber_start() {
  KLEIBER_PORT="$(free_port)"
  KLEIBER_HTTP_PORT="$(free_port)"
  KLEIBER_COMPONENT_PORT="$(free_port)"
  mkdir -p "$WORK/kleiber"
  local cert=""
  [ -n "$KLEIBER_CERT" ] && cert="certificate = \"$KLEIBER_CERT\"
key = \"$KLEIBER_KEY\""
  cat > "$WORK/kleiber/kleiber.toml" <<EOT
data_dir = "$WORK/kleiber/data"
[hosts."$KLEIBER_DOMAIN"]
$cert
[listen]
c2s_starttls = ["127.0.0.1:$KLEIBER_PORT"]
c2s_direct_tls = []
s2s = []
components = ["127.0.0.1:$KLEIBER_COMPONENT_PORT"]
[http]
listen = ["127.0.0.1:$KLEIBER_HTTP_PORT"]
public_url = "https://{host}:$KLEIBER_HTTP_PORT"
[upload]
quota_mb = 0
[[components]]
domain = "echo.$KLEIBER_DOMAIN"
secret = "bench-secret"
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
${KLEIBER_LIMITS:-}
${KLEIBER_EXTRA:-}
EOT
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
    prosody|ejabberd)
      if "$PEERS" "$1" status >/dev/null 2>&1; then
        log "$1 is already running (someone else's?): not measuring it"; return 1
      fi
      "$PEERS" "$1" start >&2 ;;
    *) log "unknown server $1"; return 1 ;;
  esac
}
stop_srv() { case "$1" in kleiber) kleiber_stop ;; *) "$PEERS" "$1" stop >&2 || true ;; esac; }
pids_srv() { case "$1" in kleiber) echo "$KLEIBER_PID" ;; *) "$PEERS" "$1" pids ;; esac; }
target() { # host/port/domain arguments of the load generator
  if [ "${TRANSPORT:-tcp}" = websocket ]; then # RFC 7395 on each server's HTTPS port
    case "$1" in
      kleiber) echo "--host 127.0.0.1 --port $KLEIBER_HTTP_PORT --domain $KLEIBER_DOMAIN --websocket /xmpp-websocket" ;;
      prosody) echo "--host 127.0.0.1 --port ${PROSODY_HTTPS_PORT:-5443} --domain $PEER_DOMAIN --websocket /ws" ;;
      ejabberd) echo "--host 127.0.0.1 --port ${EJABBERD_HTTPS_PORT:-5343} --domain $PEER_DOMAIN --websocket /ws" ;;
    esac
    return
  fi
  case "$1" in
    kleiber) echo "--host 127.0.0.1 --port $KLEIBER_PORT --domain $KLEIBER_DOMAIN" ;;
    prosody) echo "--host 127.0.0.1 --port $PROSODY_PORT --domain $PEER_DOMAIN" ;;
    ejabberd) echo "--host 127.0.0.1 --port $EJABBERD_PORT --domain $PEER_DOMAIN" ;;
  esac
}

component_target() { # the XEP-0114 echo component of each server (benches/component.sh)
  case "$1" in
    kleiber) echo "--component 127.0.0.1:$KLEIBER_COMPONENT_PORT --component-domain echo.$KLEIBER_DOMAIN" ;;
    prosody) echo "--component 127.0.0.1:${PROSODY_COMPONENT_PORT:-5414} --component-domain echo.$PEER_DOMAIN" ;;
    ejabberd) echo "--component 127.0.0.1:${EJABBERD_COMPONENT_PORT:-5314} --component-domain echo.$PEER_DOMAIN" ;;
  esac
}

bench_cleanup() { # trap on EXIT: stop kleiber, remove $WORK unless KEEP=1 or something failed
  local rc=$?
  kleiber_stop
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ] || [ "$rc" != 0 ]; then
    log "kleiber's runtime files kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}

load() { # load SERVER ARGS...: run the generator; its RESULT line (and SAMPLE lines) go to $OUT
  local s="$1" line="" l
  shift
  log "$s: load $*"
  while IFS= read -r l; do
    case "$l" in
      "RESULT "*) line="$l" ;;
      "SAMPLE "*) echo "$l" >&2; echo "$l" >> "$OUT" ;;
    esac
  done < <("$LOAD_BIN" --label "$s" "$@" || true)
  if [ -z "$line" ]; then line="RESULT server=$s failed=1 args=$(echo "$*" | tr ' ' '_')"; FAILED=1; fi
  echo "$line" | tee -a "$OUT"
}
