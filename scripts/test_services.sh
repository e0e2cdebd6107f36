#!/usr/bin/env bash
# What the `mysql`, `browser` and `image` test tiers need on this machine, set up idempotently
# (`make test` runs this first, `make test-services` alone):
#
#   - Chromium (Debian's chromium, with fonts-dejavu-core) for the browser tier, which opens the
#     HTML run report headless (tests/test_report_e2e.py); enough when a chromium is on PATH.
#   - A local MariaDB (Debian's mariadb-server) for the mysql tier (shared ML Metadata,
#     tests/test_metadata_store_mysql.py), with a test user that may create and drop the
#     `shelf_audit_test...` databases. The SHELF_AUDIT_TEST_MYSQL_* defaults below are the tests'
#     defaults; a server where that user already logs in (local or not) is used as it is.
#   - A Docker engine (Debian's docker.io) for the image tier, which builds the Kubeflow image
#     (tests/test_image_build.py); enough when `docker info` answers. And debootstrap, with which
#     the tier builds the image's base from Debian's mirrors (make base-image), unless BASE_IMAGE
#     names a base.
#
# As root with apt-get, what is missing is installed (one apt-get update and install, none when
# nothing is missing), and MariaDB and dockerd are started without systemd (each in its own session).
# Otherwise this names the packages to install and exits 1, before any test runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# mariadbd, and the ldconfig that dpkg runs, live in sbin, which a plain user's PATH (or env -i) lacks.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

HOST="${SHELF_AUDIT_TEST_MYSQL_HOST:-127.0.0.1}"
PORT="${SHELF_AUDIT_TEST_MYSQL_PORT:-3306}"
USER_NAME="${SHELF_AUDIT_TEST_MYSQL_USER:-shelf_audit_test}"
PASSWORD="${SHELF_AUDIT_TEST_MYSQL_PASSWORD:-shelf-audit-test-pw}"
MARIADB_LOG=/var/log/mysql/shelf-audit-test.log
DOCKERD_LOG=/var/log/shelf-audit-dockerd.log
STARTED=$SECONDS

is_root() { [ "$(id -u)" = 0 ]; }
has() { command -v "$1" >/dev/null 2>&1; }

chromium_path() { command -v chromium || command -v chromium-browser || true; }

# Can the tests' user log in over TCP, the way ML Metadata's client does? The mariadb client, or
# the environment's pymysql (the tests' own) where no client is installed.
test_user_logs_in() {
  if has mariadb; then
    MYSQL_PWD="$PASSWORD" mariadb --protocol=tcp --connect-timeout=2 -h "$HOST" -P "$PORT" -u "$USER_NAME" \
      -e 'SELECT 1' >/dev/null 2>&1
  elif [ -x .venv/bin/python ]; then
    HOST="$HOST" PORT="$PORT" USER_NAME="$USER_NAME" PASSWORD="$PASSWORD" .venv/bin/python -c '
import os, pymysql
pymysql.connect(host=os.environ["HOST"], port=int(os.environ["PORT"]), user=os.environ["USER_NAME"],
                password=os.environ["PASSWORD"], connect_timeout=2).close()' >/dev/null 2>&1
  else
    return 1
  fi
}

# Wait up to 60 s until CHECK (a command) passes while PID lives; else name WHAT and show the end of LOG.
wait_until_up() {
  local what=$1 pid=$2 check=$3 log=$4
  for _ in $(seq 1 120); do
    "$check" && return 0
    kill -0 "$pid" 2>/dev/null || break # it gave up: no point in waiting
    sleep 0.5
  done
  echo "error: $what did not start; the end of $log:" >&2
  tail -n 30 "$log" >&2 || true
  return 1
}

server_answers() { mariadb-admin --protocol=socket --connect-timeout=1 ping >/dev/null 2>&1; }

is_local() { [ "$HOST" = 127.0.0.1 ] || [ "$HOST" = localhost ]; }

port_taken() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

start_mariadb() {
  if port_taken; then
    echo "error: another server listens at $HOST:$PORT, and $USER_NAME cannot log in there: create that" \
      "user there, or point SHELF_AUDIT_TEST_MYSQL_PORT at a free port" >&2
    return 1
  fi
  echo ">> mariadb: starting the server (log $MARIADB_LOG)"
  install -d -o mysql -g mysql /run/mysqld /var/log/mysql
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  # No systemd (CI, containers, chroots): mysqld_safe in its own session, detached from this
  # script's output, so it outlives `make test`'s shell.
  setsid mysqld_safe --skip-syslog --log-error="$MARIADB_LOG" --port="$PORT" </dev/null >/dev/null 2>&1 &
  wait_until_up mariadb $! server_answers "$MARIADB_LOG"
}

docker_answers() { has docker && docker info >/dev/null 2>&1; }

start_dockerd() {
  echo ">> docker: starting dockerd (log $DOCKERD_LOG)"
  # No systemd (CI, containers): dockerd in its own session, detached from this script's output,
  # so it outlives `make test`'s shell.
  setsid nohup dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 &
  wait_until_up dockerd $! docker_answers "$DOCKERD_LOG"
}

# The tests' user: password login (mysql_native_password, which ML Metadata's client speaks),
# all rights on the shelf_audit_test... databases only (the tests make a fresh one per test).
create_test_user() {
  local sql="" host
  for host in localhost 127.0.0.1; do
    sql+="CREATE USER IF NOT EXISTS '$USER_NAME'@'$host';"
    sql+="ALTER USER '$USER_NAME'@'$host' IDENTIFIED VIA mysql_native_password USING PASSWORD('$PASSWORD');"
    sql+="GRANT ALL PRIVILEGES ON \`shelf\\_audit\\_test%\`.* TO '$USER_NAME'@'$host';"
  done
  mariadb --protocol=socket -u root -e "$sql"
}

# 1. What is missing.
packages=()
mariadb_ready=false
if [ -n "$(chromium_path)" ]; then
  echo ">> chromium: $(chromium_path) (already installed)"
else
  packages+=(chromium fonts-dejavu-core)
fi
if test_user_logs_in; then
  mariadb_ready=true
  echo ">> mariadb: ready at $HOST:$PORT as $USER_NAME (already set up)"
elif ! is_local; then
  echo "error: $USER_NAME cannot log in at $HOST:$PORT (SHELF_AUDIT_TEST_MYSQL_*); only a local server" \
    "(127.0.0.1 or localhost) is set up here" >&2
  exit 1
elif ! has mariadbd; then
  packages+=(mariadb-server)
fi
docker_ready=false
if docker_answers; then
  docker_ready=true
  echo ">> docker: the engine answers (already running)"
elif ! has dockerd; then
  packages+=(docker.io)
fi
if [ -z "${BASE_IMAGE:-}" ] && ! has debootstrap; then
  packages+=(debootstrap)
fi

# 2. Without root or apt-get: say what to install, and stop before the tests.
if { [ ${#packages[@]} -gt 0 ] && ! { is_root && has apt-get; }; } || { ! { $mariadb_ready && $docker_ready; } && ! is_root; }; then
  echo "error: the test tiers need what this machine lacks, and only root with apt-get sets it up here:" >&2
  [ -n "$(chromium_path)" ] || echo "  browser tier: no chromium on PATH" >&2
  $mariadb_ready || echo "  mysql tier: $USER_NAME cannot log in at $HOST:$PORT" >&2
  $docker_ready || echo "  image tier: no Docker engine answers (docker info)" >&2
  [ -n "${BASE_IMAGE:-}" ] || has debootstrap || echo "  image tier: no debootstrap to build the base (or set BASE_IMAGE)" >&2
  if [ ${#packages[@]} -gt 0 ]; then
    echo "Install the Debian packages:" >&2
    echo "  sudo apt-get install --no-install-recommends ${packages[*]}" >&2
  fi
  if ! { $mariadb_ready && $docker_ready; }; then
    echo "Start MariaDB and dockerd and create the test user (this script, as root; it installs the packages too):" >&2
    echo "  sudo make test-services" >&2
  fi
  echo "then run make test again." >&2
  exit 1
fi

# 3. Install (one apt-get update, only when something is missing), start, create the user.
if [ ${#packages[@]} -gt 0 ]; then
  echo ">> installing Debian's ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  if [ -z "$(chromium_path)" ]; then
    echo "error: apt-get installed chromium but no chromium is on PATH" >&2
    exit 1
  fi
  echo ">> chromium: $(chromium_path)"
fi
if ! $docker_ready; then
  docker_answers || start_dockerd
  echo ">> docker: the engine answers"
fi
if ! $mariadb_ready; then
  server_answers || start_mariadb
  create_test_user
  if ! test_user_logs_in; then
    echo "error: mariadb runs but $USER_NAME cannot log in at $HOST:$PORT" >&2
    exit 1
  fi
  echo ">> mariadb: ready at $HOST:$PORT as $USER_NAME"
fi
echo ">> test services ready in $((SECONDS - STARTED))s"
