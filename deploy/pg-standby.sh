#!/usr/bin/env bash
# A synchronous streaming standby for Timebank's PostgreSQL (docs/operations.md, "A standby that
# loses nothing"). Run the commands as the operating-system user that owns the clusters
# (postgres on Debian). Connection passwords come from ~/.pgpass or PGPASSWORD, never from the
# command line.
#
#   pg-standby.sh primary  --host H --port P [--user U] --standby NAME [--async]
#       Make the primary wait for the standby NAME to flush each commit before acknowledging
#       it: synchronous_commit = on, synchronous_standby_names = 'FIRST 1 ("NAME")' (ALTER
#       SYSTEM, then a reload; no restart). --async undoes it (synchronous_commit = local, no
#       synchronous standby): a failover may then lose acknowledged appends. Only for tests.
#   pg-standby.sh standby  --primary-host H --primary-port P [--user U] --name NAME
#                          --data DIR --port S [--no-start]
#       Clone the primary into the empty directory DIR with pg_basebackup (-R writes the
#       standby's primary_conninfo, with application_name=NAME) and start it on port S.
#   pg-standby.sh status   --host H --port P [--user U]
#       The primary's view of its standbys: name, state, sync_state (sync = acknowledging).
#   pg-standby.sh promote  --data DIR
#       Make the standby a primary (pg_ctl promote) after the old primary is gone for good.
#
# PG_BINDIR selects the PostgreSQL programs (default: `pg_config --bindir`, else the newest
# /usr/lib/postgresql/*/bin).
set -euo pipefail

die() { echo "pg-standby: $*" >&2; exit 2; }

bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then echo "$PG_BINDIR"; return; fi
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/pg_ctl" ]]; then
    pg_config --bindir; return
  fi
  local newest
  newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$newest" ]] || die "no PostgreSQL programs found; set PG_BINDIR"
  echo "$newest"
}

[[ $# -ge 1 ]] || die "usage: pg-standby.sh primary|standby|status|promote [options]"
command="$1"; shift
host=127.0.0.1 port="" user=postgres standby="" async=0 primary_host="" primary_port=""
name="" data="" start=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --standby) standby="$2"; shift 2 ;;
    --async) async=1; shift ;;
    --primary-host) primary_host="$2"; shift 2 ;;
    --primary-port) primary_port="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    *) die "unknown option $1" ;;
  esac
done
BIN="$(bindir)"
valid_name() { [[ "$1" =~ ^[a-z][a-z0-9_]{0,62}$ ]] || die "--$2 must be a lowercase name ([a-z][a-z0-9_]*)"; }
psql_primary() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U "$user" -d postgres "$@"; }

case "$command" in
  primary)
    [[ -n "$port" ]] || die "primary needs --port"
    if [[ $async == 1 ]]; then
      psql_primary -c "ALTER SYSTEM SET synchronous_commit = 'local'" \
                   -c "ALTER SYSTEM SET synchronous_standby_names = ''"
    else
      valid_name "$standby" standby
      level="$(psql_primary -At -c 'SHOW wal_level')"
      [[ "$level" != minimal ]] || die "wal_level is minimal; set it to replica and restart"
      psql_primary -c "ALTER SYSTEM SET synchronous_commit = 'on'" \
                   -c "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (\"$standby\")'"
    fi
    psql_primary -At -c 'SELECT pg_reload_conf()' >/dev/null
    psql_primary -At -c "SELECT 'synchronous_commit=' || current_setting('synchronous_commit') || ' synchronous_standby_names=' || current_setting('synchronous_standby_names')"
    ;;
  standby)
    [[ -n "$primary_host" && -n "$primary_port" && -n "$data" && -n "$port" ]] \
      || die "standby needs --primary-host, --primary-port, --data and --port"
    valid_name "$name" name
    if [[ -e "$data" && -n "$(ls -A "$data")" ]]; then die "$data is not empty"; fi
    "$BIN/pg_basebackup" -D "$data" -X stream -R -c fast -w \
      -d "host=$primary_host port=$primary_port user=$user application_name=$name"
    # The clone carries the primary's settings; the standby listens on its own port.
    echo "port = $port" >> "$data/postgresql.auto.conf"
    if [[ $start == 1 ]]; then
      "$BIN/pg_ctl" -D "$data" -l "$data/standby.log" -w -t 60 start >/dev/null
      echo "standby $name started on port $port"
    fi
    ;;
  status)
    [[ -n "$port" ]] || die "status needs --port"
    psql_primary -At -F ' ' -c "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY application_name"
    ;;
  promote)
    [[ -n "$data" ]] || die "promote needs --data"
    "$BIN/pg_ctl" -D "$data" -w -t 60 promote
    ;;
  *) die "unknown command $command (primary, standby, status, promote)" ;;
esac
