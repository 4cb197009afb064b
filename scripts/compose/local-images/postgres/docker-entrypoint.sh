#!/usr/bin/env bash
# What the official postgres image's entrypoint does, for the variables docker-compose.yml sets:
# on an empty data folder, create the cluster with POSTGRES_USER as superuser (password
# POSTGRES_PASSWORD, required for connections over the network) and the database POSTGRES_DB;
# then run the command (the server).
set -euo pipefail

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  # The password reaches initdb through a private file, never through a command line.
  umask 077
  pwfile=$(mktemp)
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  trap - EXIT
  # Other containers reach it by service name over the compose network, with the password.
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server and no socket is up before the real start, so nothing can
    # connect to a half-made cluster.
    echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "created the cluster in $PGDATA (user $user, database $db)"
fi
exec "$@"
