#!/usr/bin/env bash
# benches/mam.sh - message archive (XEP-0313) benchmark against Prosody (internal storage and
# SQLite), ejabberd (Mnesia) and kleiber, one server at a time; prints the RESULT lines.
#
# Per server:
#  1. write cost: WRITE_PAIRS pairs send WRITE_MSGS chat messages (BODY-byte bodies), each
#     archived on both sides: server CPU seconds per 1,000 messages (load --mam-write, until
#     the server is quiet after the last delivery) and bytes on disk per message (growth of the
#     server's data directory, measured with the server stopped, so everything is flushed, and
#     after `sync`). With BASELINE=1 the same run on a server with the archive off (the peers
#     started without PEERS_MAM, kleiber without [archive]): the difference is what archiving
#     adds to routing.
#  2. query latency as the archive grows: PREFIX-owner and CONTACTS contacts exchange
#     messages (load --mam-fill) until the owner's archive holds each size of FILLS in turn
#     (cumulative: 10,000 then 990,000 more), and at each size, on a restarted server, QUERIES
#     queries of "the last 50 messages with one contact" (load --mam-query; p50/p99 until
#     <fin/>). The fill's own RESULT line gives the write cost with a big archive, and the
#     disk growth per message at each size is printed too.
#
# Storage: `prosody` = Prosody 0.12 mod_mam on its internal (file) storage, `prosody-sql` =
# the same on SQLite (storage = { archive = "sql" }, sql = { driver = "SQLite3" }; needs
# Debian's lua-dbi-sqlite3), `ejabberd` = ejabberd 23.01 mod_mam on Mnesia, `kleiber` =
# kleiber with [archive] enabled = true. The peers come from ../shared/peers/peers.sh with
# PEERS_MAM=1, their runtime files in a directory of this run ($WORK/peers, or PEERS_RUN),
# never in the shared one; the SQLite variant's config is the peers' Prosody config with
# the storage lines changed, in $WORK/peers-sql.
#
# Usage:  benches/mam.sh                                   # all four, FILLS="10000 1000000"
#         SERVERS="prosody ejabberd" FILLS="10000" benches/mam.sh       # a quick run
#         SERVERS=ejabberd KEEP=1 benches/mam.sh   # keep $WORK (the filled archives) afterwards
#         PEERS_RUN=/tmp/mam-keep FRESH=0 SKIP_WRITE=1 FILLED=1000000 FILLS=1000000 \
#           SERVERS=prosody benches/mam.sh   # queries again on an archive filled before
# Every upper-case variable below can be set from the environment.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVERS="${SERVERS:-prosody prosody-sql ejabberd kleiber}"
WRITE_MSGS="${WRITE_MSGS:-20000}"   # messages of the write-cost run
WRITE_PAIRS="${WRITE_PAIRS:-50}"
BODY="${BODY:-100}"                 # body size in bytes
BASELINE="${BASELINE:-1}"           # 1: also the write run with the archive off
SKIP_WRITE="${SKIP_WRITE:-0}"       # 1: only the fills and queries
FILLS="${FILLS:-10000 1000000}"     # owner's archive sizes at which queries are measured
FILLED="${FILLED:-0}"               # messages already in the owner's archive (FRESH=0 reruns)
CONTACTS="${CONTACTS:-100}"
QUERIES="${QUERIES:-200}"
QUERY_MAX_S="${QUERY_MAX_S:-600}"   # stop measuring queries after this many seconds
WINDOW="${WINDOW:-1000}"            # messages in flight during writes and fills
FRESH="${FRESH:-1}"                 # 1: start each server on empty data
# prosody-sql only: 1 = the fills after the first are made by copying the archive rows of the
# first fill (owner and contacts) in SQLite with the server stopped (sql_clone below), not
# through the server: through the server SQLite archives ~70-90 messages/s here (a
# transaction with fsync per message), so 10^6 would take hours. The copies keep each row's
# contact ("with"), so the owner's archive stays spread evenly over the contacts.
SQL_SYNTH="${SQL_SYNTH:-1}"
QUIET_WAIT="${QUIET_WAIT:-120}"
OUT="${OUT:-/tmp/kleiber-mam-$(date +%Y%m%d-%H%M%S).txt}"

log() { echo "[mam $(date +%H:%M:%S)] $*" >&2; }

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
one_at_a_time_defaults mam
chmod 755 "$WORK" # the peers run as their own users
PEERS_RUN="${PEERS_RUN:-$WORK/peers}"
SQL_RUN="${SQL_RUN:-$WORK/peers-sql}"
KLEIBER_ARCHIVE="${KLEIBER_ARCHIVE:-[archive]
enabled = true
retention_days = 30
default_mode = \"always\"}"
export PEERS_RUN

# --- servers with the archive on (MAM=1) or off (MAM=0) -------------------------------------
MAM=1
srv_port() { case "$1" in prosody|prosody-sql) echo "$PROSODY_PORT" ;; ejabberd) echo "$EJABBERD_PORT" ;; esac; }
srv_start() {
  local p; p="$(srv_port "$1")"
  if [ -n "$p" ] && port_open "$p"; then
    log "$1: port $p is in use already (another peer running?): not starting"; return 1
  fi
  case "$1" in
    prosody|ejabberd) PEERS_MAM="$MAM" "$PEERS" "$1" start >&2 ;;
    prosody-sql) sql_start ;;
    kleiber)
      if [ "$MAM" = 1 ]; then KLEIBER_EXTRA="$KLEIBER_ARCHIVE"; else KLEIBER_EXTRA=""; fi
      kleiber_start ;;
    *) log "unknown server $1"; return 1 ;;
  esac
}
srv_stop() {
  case "$1" in
    prosody|ejabberd) "$PEERS" "$1" stop >&2 || true ;;
    prosody-sql) PEERS_RUN="$SQL_RUN" "$PEERS" prosody stop >&2 || true ;;
    kleiber) kleiber_stop ;;
  esac
}
srv_pids() {
  case "$1" in
    prosody|ejabberd) "$PEERS" "$1" pids ;;
    prosody-sql) PEERS_RUN="$SQL_RUN" "$PEERS" prosody pids ;;
    kleiber) echo "$KLEIBER_PID" ;;
  esac
}
data_dir() { # what grows with the archive
  case "$1" in
    prosody) echo "$PEERS_RUN/prosody/data" ;;
    prosody-sql) echo "$SQL_RUN/prosody/data" ;;
    ejabberd) echo "$PEERS_RUN/ejabberd/spool" ;; # Mnesia's directory
    kleiber) echo "$WORK/kleiber/data" ;;
  esac
}
srv_wipe() {
  case "$1" in
    prosody|ejabberd) rm -rf "${PEERS_RUN:?}/$1" ;;
    prosody-sql) rm -rf "${SQL_RUN:?}/prosody" ;;
    kleiber) rm -rf "$WORK/kleiber/data" ;;
  esac
}
srv_target() {
  case "$1" in
    prosody-sql) target prosody ;;
    *) target "$1" ;;
  esac
}

# Prosody with mod_mam on SQLite: the peers' config (rendered by peers.sh setup into
# $SQL_RUN) with `storage = "internal"` replaced, started as peers.sh starts Prosody.
sql_start() {
  local run="$SQL_RUN/prosody" cfg
  if ! dpkg-query -W -f='${Status}' lua-dbi-sqlite3 2>/dev/null | grep -q 'ok installed'; then
    log "prosody-sql needs Debian's lua-dbi-sqlite3 (apt-get install -y lua-dbi-sqlite3)"; return 1
  fi
  if PEERS_RUN="$SQL_RUN" "$PEERS" prosody status >/dev/null 2>&1; then
    log "prosody-sql already running"; return 1
  fi
  PEERS_MAM=1 PEERS_RUN="$SQL_RUN" "$PEERS" prosody setup
  cfg="$run/prosody.cfg.lua"
  grep -q '^storage = "internal"$' "$cfg" || { log "no 'storage = \"internal\"' line in $cfg"; return 1; }
  sed -i 's|^storage = "internal"$|default_storage = "internal"\
storage = { archive = "sql", muc_log = "sql" } -- mod_mam and mod_muc_mam on SQLite\
sql = { driver = "SQLite3", database = "prosody.sqlite" } -- in data_path|' "$cfg"
  chown prosody:prosody "$cfg"
  ulimit -n "$(ulimit -Hn)"
  (cd "$run" && exec setpriv --reuid=prosody --regid=prosody --init-groups \
    prosody --config "$cfg" -F > "$run/stdout.log" 2>&1) &
  echo $! > "$run/main.pid"
  for _ in $(seq 1 50); do
    if port_open "$PROSODY_PORT"; then log "prosody-sql started, pid $(cat "$run/main.pid")"; return 0; fi
    sleep 0.2
  done
  log "prosody-sql did not open $PROSODY_PORT:"; cat "$run/stdout.log" >&2; return 1
}

# sql_clone DB ROUNDS: each archive row of PREFIX-owner and PREFIX-k* (not the writers'),
# copied ROUNDS times (new keys, same contact, time and stanza) in one transaction.
sql_clone() {
  python3 - "$1" "$2" "${PREFIX:-bench}" <<'PY'
import sqlite3, sys
db, rounds, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = sqlite3.connect(db)
cols = [r[1] for r in con.execute('PRAGMA table_info(prosodyarchive)') if r[1] != 'sort_id']
q = lambda c: '"%s"' % c
sel = ", ".join(("%s || '-c' || ?" % q(c)) if c == "key" else q(c) for c in cols)
top = con.execute("SELECT max(sort_id) FROM prosodyarchive").fetchone()[0]
where = ("sort_id <= ? AND store = 'archive' AND (\"user\" = ? OR \"user\" GLOB ?)")
with con:
    for r in range(1, rounds + 1):
        con.execute("INSERT INTO prosodyarchive (%s) SELECT %s FROM prosodyarchive WHERE %s "
                    "ORDER BY sort_id" % (", ".join(map(q, cols)), sel, where),
                    (r, top, prefix + "-owner", prefix + "-k[0-9]*"))
n = con.execute("SELECT count(*) FROM prosodyarchive WHERE \"user\" = ?",
                (prefix + "-owner",)).fetchone()[0]
print("owner rows", n, "total rows", con.execute("SELECT count(*) FROM prosodyarchive").fetchone()[0])
PY
}

disk() { # bytes (apparent) and bytes allocated in the data directory of $1
  sync
  local d; d="$(data_dir "$1")"
  [ -d "$d" ] || { echo "0 0"; return; }
  echo "$(du -sb "$d" | cut -f1) $(du -sB1 "$d" | cut -f1)"
}

start_measured() { # start $1, wait for a quiet machine; sets PIDS
  srv_start "$1" || return 1
  sleep 2
  wait_quiet
  PIDS="$(srv_pids "$1" | tr ' ' ',')"
}

disk_result() { # SERVER PHASE MSGS "BYTES0 ALLOC0" "BYTES1 ALLOC1"
  local b0 a0 b1 a1
  read -r b0 a0 <<< "$4"; read -r b1 a1 <<< "$5"
  echo "RESULT server=$1 mode=mam-disk phase=$2 msgs=$3 bytes_before=$b0 bytes_after=$b1 \
bytes_per_msg=$(( (b1 - b0) / ($3 > 0 ? $3 : 1) )) allocated_before=$a0 allocated_after=$a1 \
allocated_per_msg=$(( (a1 - a0) / ($3 > 0 ? $3 : 1) ))" | tee -a "$OUT"
}

write_run() { # SERVER LABEL: register the writers, then the measured writes
  local s="$1" label="$2" d0 d1
  start_measured "$s" || return 1
  # shellcheck disable=SC2046 # srv_target prints several words
  load "$label" $(srv_target "$s") --mam-write 1 --pairs "$WRITE_PAIRS" --register-only >/dev/null
  srv_stop "$s"
  d0="$(disk "$s")"
  start_measured "$s" || return 1
  # shellcheck disable=SC2046
  load "$label" $(srv_target "$s") --mam-write "$WRITE_MSGS" --pairs "$WRITE_PAIRS" \
    --body-size "$BODY" --window "$WINDOW" --server-pid "$PIDS"
  srv_stop "$s"
  d1="$(disk "$s")"
  disk_result "$label" write "$WRITE_MSGS" "$d0" "$d1"
}

bench_mam() {
  local s="$1" have="$FILLED" f d0 d1
  [ "$FRESH" = 1 ] && srv_wipe "$s"
  MAM=1
  if [ "$SKIP_WRITE" != 1 ]; then
    log "=== $s: write cost, $WRITE_MSGS messages, $WRITE_PAIRS pairs, archive on"
    write_run "$s" "$s" || return 1
    if [ "$BASELINE" = 1 ] && [ "$s" != prosody-sql ]; then
      log "=== $s: the same with the archive off"
      MAM=0
      srv_wipe "$s"
      write_run "$s" "$s-noarchive" || return 1
      MAM=1
      srv_wipe "$s"
    fi
  fi
  for f in $FILLS; do
    if [ "$f" -gt "$have" ] && [ "$s" = prosody-sql ] && [ "$SQL_SYNTH" = 1 ] && [ "$have" -gt 0 ] \
       && [ $(( f % have )) = 0 ]; then
      log "=== $s: the owner's archive from $have to $f messages by copying rows in SQLite"
      d0="$(disk "$s")"
      sql_clone "$(data_dir "$s")/prosody.sqlite" $(( f / have - 1 )) >&2
      chown -R prosody:prosody "$(data_dir "$s")"
      d1="$(disk "$s")"
      disk_result "$s" "copied-to-$f" $(( f - have )) "$d0" "$d1"
      have="$f"
    elif [ "$f" -gt "$have" ]; then
      log "=== $s: filling the owner's archive from $have to $f messages ($CONTACTS contacts)"
      d0="$(disk "$s")"
      start_measured "$s" || return 1
      # shellcheck disable=SC2046
      load "$s" $(srv_target "$s") --register --mam-fill $(( f - have )) \
        --mam-contacts "$CONTACTS" --body-size "$BODY" --window "$WINDOW" \
        --login-timeout 300 --server-pid "$PIDS"
      srv_stop "$s"
      d1="$(disk "$s")"
      disk_result "$s" "fill-to-$f" $(( f - have )) "$d0" "$d1"
      have="$f"
    fi
    log "=== $s: $QUERIES queries with $have messages in the owner's archive"
    start_measured "$s" || return 1
    # shellcheck disable=SC2046
    load "$s" $(srv_target "$s") --mam-query "$QUERIES" --mam-contacts "$CONTACTS" \
      --mam-archive "$have" --duration "$QUERY_MAX_S" --server-pid "$PIDS"
    srv_stop "$s"
  done
}

cleanup() {
  local rc=$?
  for s in $SERVERS; do srv_stop "$s" >/dev/null 2>&1 || true; done
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ] || [ "$rc" != 0 ]; then
    log "runtime files kept in $WORK (peers: $PEERS_RUN, $SQL_RUN)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
case " $SERVERS " in *" kleiber "*) ;; *) SKIP_BUILD=1 ;; esac # no kleiber: no kleiber build
if [ "$SKIP_BUILD" = 1 ] && [ ! -x "$KLEIBER_BIN" ]; then KLEIBER_BIN=/bin/true; fi
build
log "results also go to $OUT"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) mam.sh SERVERS='$SERVERS' WRITE_MSGS=$WRITE_MSGS WRITE_PAIRS=$WRITE_PAIRS BODY=$BODY FILLS='$FILLS' CONTACTS=$CONTACTS QUERIES=$QUERIES"
  echo "# $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"; } >> "$OUT"
for s in $SERVERS; do
  for other in $SERVERS; do [ "$other" = "$s" ] || srv_stop "$other" >/dev/null 2>&1; done
  if "$PEERS" prosody status >/dev/null 2>&1 || "$PEERS" ejabberd status >/dev/null 2>&1; then
    log "a peer is running in $PEERS_RUN already (someone else's?)"
  fi
  bench_mam "$s" || { log "$s: failed"; echo "RESULT server=$s failed=1" >> "$OUT"; FAILED=1; }
done
echo
echo "== RESULT lines (also in $OUT)"
grep '^RESULT' "$OUT"
