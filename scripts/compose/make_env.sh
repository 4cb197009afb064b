#!/usr/bin/env bash
# Writes .env (or FILE) from .env.example with a new random value for every secret: the Redis
# and PostgreSQL passwords and Flower's (user admin). Every other line is copied as it is; set
# CXRQ_DATA_DIR in the file afterwards, or pass it in the environment.
#
#   scripts/compose/make_env.sh                          # .env; an existing one is kept
#   CXRQ_DATA_DIR=/srv/xrays scripts/compose/make_env.sh FILE
#
# PostgreSQL takes its password when its volume is first created: a new .env for an existing
# stack needs `docker compose down -v` (which deletes the results) or the old password.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-.env}
if [ -e "$out" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "$out exists; FORCE=1 replaces it (and its secrets)" >&2
  exit 1
fi

# 48 hex digits from the kernel's CSPRNG: no tool beyond coreutils, and safe inside URLs.
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

umask 077 # only the owner may read the secrets
while IFS= read -r line; do
  case $line in
    REDIS_PASSWORD=*) echo "REDIS_PASSWORD=$(secret)" ;;
    POSTGRES_PASSWORD=*) echo "POSTGRES_PASSWORD=$(secret)" ;;
    WORKER_DB_PASSWORD=*) echo "WORKER_DB_PASSWORD=$(secret)" ;;
    FLOWER_BASIC_AUTH=*) echo "FLOWER_BASIC_AUTH=admin:$(secret)" ;;
    CXRQ_PATIENT_SALT=*) echo "CXRQ_PATIENT_SALT=$(secret)" ;;
    CXRQ_DATA_DIR=*) echo "CXRQ_DATA_DIR=${CXRQ_DATA_DIR:-${line#CXRQ_DATA_DIR=}}" ;;
    *) echo "$line" ;;
  esac
done <.env.example >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out with new secrets (readable by its owner only); Flower's user is admin"
