#!/usr/bin/env bash
# Throwaway PostgreSQL and MariaDB servers for image-agent's tests and CI.
#
#   eval "$(bash scripts/test-db-servers.sh start)"   # installs if missing, starts both
#   bash scripts/test-db-servers.sh stop               # stops them, removes their data
#
# `start` prints only `export NAME=value` lines on stdout (progress goes to
# stderr): IMAGE_AGENT_TEST_PG_URL, IMAGE_AGENT_TEST_MYSQL_URL and
# IMAGE_AGENT_TEST_DB_DIR (the folder `stop` needs). Both servers listen on
# 127.0.0.1 only, on non-default ports (PG_PORT, default 55432; MYSQL_PORT,
# default 53306), with their data in a temp folder and durability off: they
# are for tests, never for data anyone wants to keep. No systemd needed: the
# servers are started directly, as their own unprivileged users. Their
# default time zone is deliberately not UTC (Asia/Shanghai, +08:00), so a
# test notices any time the agent would read in the server's local zone.
#
# The test user `image_agent` may create databases named `ia_test_*` (each
# test makes a fresh one), and holds exactly the grants docs/databases.md
# asks of a production user on them.
set -euo pipefail

PG_PORT="${PG_PORT:-55432}"
MYSQL_PORT="${MYSQL_PORT:-53306}"
TEST_USER="image_agent"
TEST_PASSWORD="${IMAGE_AGENT_TEST_DB_PASSWORD:-ia-test-pw}"

say() { echo "test-db-servers: $*" >&2; }
die() { say "$*"; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

mariadb_bin() {
  local b
  for b in mariadbd mysqld; do
    for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
      [ -x "$d/$b" ] && { echo "$d/$b"; return 0; }
    done
  done
  return 1
}

install_missing() {
  local pkgs=()
  pg_bindir >/dev/null || pkgs+=(postgresql)
  mariadb_bin >/dev/null || pkgs+=(mariadb-server)
  [ ${#pkgs[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${pkgs[*]}; install them (as root: apt-get install -y ${pkgs[*]})"
  say "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not try to start services (no init system here).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    local made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; }
  [ "${made_policy:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# Runs a command as `user` (servers refuse to run as root).
as_user() {
  local user="$1"; shift
  if [ "$(id -u)" -ne 0 ]; then "$@"; return; fi
  if command -v runuser >/dev/null; then runuser -u "$user" -- "$@"; else su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"; fi
}

ensure_user() {
  id "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || return 0
  useradd --system --no-create-home --shell /usr/sbin/nologin "$1"
}

start_pg() {
  local bin dir="$BASE/pg" user=postgres
  bin="$(pg_bindir)" || die "PostgreSQL's initdb was not found"
  [ "$(id -u)" -eq 0 ] || user="$(id -un)"
  ensure_user "$user"
  port_busy "$PG_PORT" && die "port $PG_PORT is in use (set PG_PORT)"
  mkdir -p "$dir/data" "$dir/run"
  [ "$(id -u)" -eq 0 ] && chown -R "$user" "$dir"
  printf '%s\n' "$TEST_PASSWORD" >"$dir/pw"
  chmod 600 "$dir/pw"; [ "$(id -u)" -eq 0 ] && chown "$user" "$dir/pw"
  as_user "$user" "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$dir/pw" -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  rm -f "$dir/pw"
  as_user "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $dir/run -c fsync=off -c synchronous_commit=off -c timezone=Asia/Shanghai -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; die "PostgreSQL did not start"; }
  as_user "$user" "$bin/psql" -q -X -v ON_ERROR_STOP=1 -h "$dir/run" -p "$PG_PORT" -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE $TEST_USER LOGIN CREATEDB PASSWORD '$TEST_PASSWORD';
SQL
  echo "$bin" >"$dir/bindir"
  echo "$user" >"$dir/user"
  say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

start_mariadb() {
  local bin dir="$BASE/mysql" user=mysql client install
  bin="$(mariadb_bin)" || die "mariadbd was not found"
  client="$(command -v mariadb || command -v mysql)" || die "the mariadb client was not found"
  install="$(command -v mariadb-install-db || command -v mysql_install_db)" || die "mariadb-install-db was not found"
  [ "$(id -u)" -eq 0 ] || user="$(id -un)"
  ensure_user "$user"
  port_busy "$MYSQL_PORT" && die "port $MYSQL_PORT is in use (set MYSQL_PORT)"
  mkdir -p "$dir/data" "$dir/run"
  [ "$(id -u)" -eq 0 ] && chown -R "$user" "$dir"
  "$install" --no-defaults --user="$user" --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; die "mariadb-install-db failed"; }
  # Started in the background by this shell; it drops to `user` itself.
  "$bin" --no-defaults --user="$user" --datadir="$dir/data" --socket="$dir/run/mysqld.sock" \
    --pid-file="$dir/run/mysqld.pid" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --log-error="$dir/server.log" --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 \
    --innodb-doublewrite=0 --skip-name-resolve --max-connections=300 \
    --default-time-zone=+08:00 </dev/null >/dev/null 2>&1 &
  local i
  for i in $(seq 1 300); do
    "$client" --no-defaults -uroot -S "$dir/run/mysqld.sock" -e 'SELECT 1' >/dev/null 2>&1 && break
    [ "$i" = 300 ] && { cat "$dir/server.log" >&2; die "MariaDB did not start"; }
    sleep 0.1
  done
  "$client" --no-defaults -uroot -S "$dir/run/mysqld.sock" <<SQL
CREATE USER '$TEST_USER'@'127.0.0.1' IDENTIFIED BY '$TEST_PASSWORD';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, TRIGGER
  ON \`ia\\_test\\_%\`.* TO '$TEST_USER'@'127.0.0.1';
SQL
  echo "$client" >"$dir/client"
  say "MariaDB $("$bin" --version | awk '{print $3}') on 127.0.0.1:$MYSQL_PORT"
}

stop_all() {
  local dir="${1:-${IMAGE_AGENT_TEST_DB_DIR:-}}"
  [ -n "$dir" ] && [ -d "$dir" ] || die "no server folder given (pass it, or set IMAGE_AGENT_TEST_DB_DIR)"
  [ -f "$dir/marker" ] || die "$dir was not made by this script"
  if [ -f "$dir/pg/bindir" ]; then
    as_user "$(cat "$dir/pg/user")" "$(cat "$dir/pg/bindir")/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/mysql/run/mysqld.pid" ]; then
    local pid
    pid="$(cat "$dir/mysql/run/mysqld.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  say "stopped, removed $dir"
}

case "${1:-start}" in
  start)
    install_missing
    BASE="$(mktemp -d "${TMPDIR:-/tmp}/image-agent-db.XXXXXX")"
    chmod 755 "$BASE"
    touch "$BASE/marker"
    trap 'say "start failed; cleaning up"; stop_all "$BASE" >/dev/null 2>&1 || true' ERR
    start_pg &
    pg_job=$!
    start_mariadb
    wait "$pg_job" || { stop_all "$BASE" >/dev/null 2>&1 || true; die "PostgreSQL failed"; }
    trap - ERR
    echo "export IMAGE_AGENT_TEST_DB_DIR='$BASE'"
    echo "export IMAGE_AGENT_TEST_PG_URL='postgres://$TEST_USER:$TEST_PASSWORD@127.0.0.1:$PG_PORT/postgres'"
    echo "export IMAGE_AGENT_TEST_MYSQL_URL='mysql://$TEST_USER:$TEST_PASSWORD@127.0.0.1:$MYSQL_PORT/'"
    ;;
  stop)
    stop_all "${2:-}"
    ;;
  *)
    die "usage: $0 [start|stop [DIR]]"
    ;;
esac
