# Shell functions the benchmark scripts share (sourced by federation.sh and resume_storm.sh).
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
