#!/usr/bin/env bash
# A throw-away PostgreSQL for the broker's tests, from Debian's packages, on loopback.
#
#   source scripts/postgres-test.sh     # installs PostgreSQL if missing, starts a cluster,
#                                       # exports LIFELINE_TEST_POSTGRES_URL
#   cargo test -p lifeline-broker       # the PostgreSQL tests now run (in CI they must)
#   postgres_test_stop                  # stops the cluster and deletes it
#
# The cluster lives in a temporary folder owned by the `postgres` user (initdb refuses root),
# listens on 127.0.0.1 only, on a free port, with trust authentication: tests only. fsync is off
# (faster tests) unless LIFELINE_TEST_POSTGRES_FSYNC=on (benchmarks).
# If LIFELINE_TEST_POSTGRES_URL is already set, nothing is done.

postgres_test_start() {
  if [ -n "${LIFELINE_TEST_POSTGRES_URL:-}" ]; then
    echo "postgres-test: using LIFELINE_TEST_POSTGRES_URL from the environment"
    return 0
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "postgres-test: installing postgresql from Debian's packages"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  # Debian's package may start its own cluster on 5432; ours is separate and needs none of it.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    run=(runuser -u postgres --)
  fi
  local dir port
  dir=$(mktemp -d /tmp/lifeline-pg.XXXXXX)
  chmod 700 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  port=55432
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=${LIFELINE_TEST_POSTGRES_FSYNC:-off} -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  export LIFELINE_TEST_POSTGRES_DIR="$dir"
  export LIFELINE_TEST_POSTGRES_BIN="$bin"
  export LIFELINE_TEST_POSTGRES_URL="host=127.0.0.1 port=$port user=postgres"
  echo "postgres-test: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"
}

postgres_test_stop() {
  if [ -n "${LIFELINE_TEST_POSTGRES_DIR:-}" ] && [ -d "$LIFELINE_TEST_POSTGRES_DIR" ]; then
    local run=()
    [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$LIFELINE_TEST_POSTGRES_BIN/pg_ctl" -D "$LIFELINE_TEST_POSTGRES_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$LIFELINE_TEST_POSTGRES_DIR"
    unset LIFELINE_TEST_POSTGRES_DIR LIFELINE_TEST_POSTGRES_URL
  fi
}

postgres_test_start
