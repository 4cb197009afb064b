#!/usr/bin/env bash
# The compose deployment end to end on this machine's Docker engine (`make compose-test`):
# images built with no registry and no package index (local Debian stand-ins, wheelhouse),
# `up --scale worker=3` with random secrets, a tiny model trained inside the compose network,
# then ≥1,000 real X-rays scored in chunks of 25 while one worker is SIGKILLed mid-job and Redis
# is restarted. It passes when the job ends `succeeded` with exactly one prediction row per
# image, Flower answers 200 with its password and 401 without, and Prometheus (on 127.0.0.1)
# scrapes the live worker replicas it found by DNS on the compose network.
#
# Its own compose project, image tag and Flower port, so a user's stack is never touched;
# everything it made (containers, volumes, network, temp folder) is removed at the end, also on
# failure. Settings (environment):
#   CXRQ_TEST_IMAGES=local|public  local (default): Debian stand-ins and build/wheelhouse, fully
#                                  offline; public: python:3.11-slim etc. and the package index
#   CXRQ_TEST_COPIES=7             copies of the 150 images of shared/data/fullres to score
#   CXRQ_TEST_FLOWER_PORT=5555     host port for Flower (127.0.0.1 only)
#   CXRQ_TEST_PROMETHEUS_PORT=9090 host port for Prometheus (127.0.0.1 only)
#   CXRQ_TEST_JOB_TIMEOUT=600      seconds the scoring job may take
#   CXRQ_TEST_VISIBILITY_TIMEOUT   passed to the workers as CXRQ_VISIBILITY_TIMEOUT (default:
#                                  the compose default, 4 h: recovery is the workers' leases)
#   CXRQ_SHARED_DATA=../shared/data
set -euo pipefail
cd "$(dirname "$0")/../.."

t0=$(date +%s)
say() { printf '[%4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() {
  say "FAILED: $*" >&2
  exit 1
}

PROJECT=cxrq-compose-test
IMAGES=${CXRQ_TEST_IMAGES:-local}
COPIES=${CXRQ_TEST_COPIES:-7}
FLOWER_PORT=${CXRQ_TEST_FLOWER_PORT:-5555}
PROM_PORT=${CXRQ_TEST_PROMETHEUS_PORT:-9090}
JOB_TIMEOUT=${CXRQ_TEST_JOB_TIMEOUT:-600}
SHARED=${CXRQ_SHARED_DATA:-../shared/data}

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
  # docker-compose v1 builds through the docker CLI's classic builder (no buildx needed).
  export COMPOSE_DOCKER_CLI_BUILD=1
else
  fail "neither 'docker compose' nor docker-compose is installed"
fi
export DOCKER_BUILDKIT=0
docker info >/dev/null 2>&1 || fail "no Docker engine answers"
[ -d "$SHARED/fullres" ] || fail "$SHARED/fullres not found (set CXRQ_SHARED_DATA)"
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$FLOWER_PORT/"; then
  fail "127.0.0.1:$FLOWER_PORT is taken (set CXRQ_TEST_FLOWER_PORT)"
fi
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PROM_PORT/"; then
  fail "127.0.0.1:$PROM_PORT is taken (set CXRQ_TEST_PROMETHEUS_PORT)"
fi
# Values from the caller's shell would override the test's env file.
unset REDIS_PASSWORD POSTGRES_PASSWORD WORKER_DB_PASSWORD FLOWER_BASIC_AUTH CXRQ_DATA_DIR PYTHON_IMAGE \
  REDIS_IMAGE POSTGRES_IMAGE PIP_OFFLINE CXRQ_IMAGE CXRQ_VISIBILITY_TIMEOUT PROMETHEUS_IMAGE \
  PROMETHEUS_PORT

work=$(mktemp -d "${TMPDIR:-/tmp}/cxrq-compose-test.XXXXXX")
chmod 755 "$work" # the containers' user (uid 1000) reads the data below it
compose() { "${COMPOSE[@]}" --project-name "$PROJECT" --env-file "$work/env" "$@"; }

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -e "$work/env" ]; then
    echo "---- worker logs (last 60 lines each) ----"
    compose logs --no-color --tail 60 worker 2>&1 || true
    echo "---- migrate, redis, postgres, flower, prometheus logs (last 20 lines each) ----"
    compose logs --no-color --tail 20 migrate redis postgres flower prometheus 2>&1 || true
  fi
  if [ -e "$work/env" ]; then
    compose --profile cli down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  say "total $(($(date +%s) - t0)) s ($([ "$rc" = 0 ] && echo passed || echo FAILED))"
}
trap cleanup EXIT

# -- images ---------------------------------------------------------------------------------
scripts/compose/make_env.sh "$work/env" >/dev/null
{
  echo "CXRQ_DATA_DIR=$work/data"
  echo "CXRQ_IMAGE=cxrq:compose-test"
  echo "FLOWER_PORT=$FLOWER_PORT"
  echo "PROMETHEUS_PORT=$PROM_PORT"
  if [ -n "${CXRQ_TEST_VISIBILITY_TIMEOUT:-}" ]; then
    echo "CXRQ_VISIBILITY_TIMEOUT=$CXRQ_TEST_VISIBILITY_TIMEOUT"
  fi
} >>"$work/env"
if [ "$IMAGES" = local ]; then
  say "base images: Debian stand-ins (scripts/compose/build_local_images.sh)"
  scripts/compose/build_local_images.sh | sed 's/^/    /'
  say "wheelhouse (scripts/compose/build_wheelhouse.sh)"
  scripts/compose/build_wheelhouse.sh 2>&1 | grep -v 'is ignored: it is neither' | sed 's/^/    /'
  {
    echo "PYTHON_IMAGE=cxrq-local/python:3.11"
    echo "REDIS_IMAGE=cxrq-local/redis:7"
    echo "POSTGRES_IMAGE=cxrq-local/postgres:15"
    echo "PROMETHEUS_IMAGE=cxrq-local/prometheus:2"
    echo "PIP_OFFLINE=1"
  } >>"$work/env"
fi
say "building the cxrq image (docker compose build)"
compose build migrate >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log"
  fail "image build"
}
say "image: $(docker image ls --format '{{.Size}}' cxrq:compose-test)"

# -- data -----------------------------------------------------------------------------------
# Copies, not symlinks: the scanner counts a symlinked duplicate once. Each copy is its own file
# with its own name, so every one of them must get exactly one row.
mkdir -p "$work/data/score" "$work/data/small/train"
for cls in NORMAL PNEUMONIA; do
  mkdir -p "$work/data/score/$cls" "$work/data/small/train/$cls"
  for i in $(seq "$COPIES"); do
    for f in "$SHARED/fullres/$cls"/*; do cp "$f" "$work/data/score/$cls/copy$i-${f##*/}"; done
  done
  # The tiny training set: 224-px images of the training split.
  mapfile -t small < <(find "$SHARED/chest_xray/train/$cls" -type f | sort)
  cp -t "$work/data/small/train/$cls" "${small[@]:0:24}"
done
chmod -R a+rX "$work/data"
n_images=$(find "$work/data/score" -type f | wc -l)
[ "$n_images" -ge 1000 ] || fail "only $n_images images to score"
say "data: $n_images images to score in $work/data/score"

# -- stack ----------------------------------------------------------------------------------
say "docker compose up -d --scale worker=3"
compose up -d --no-build --scale worker=3 >"$work/up.log" 2>&1 || {
  cat "$work/up.log"
  fail "compose up"
}
say "up: $(compose ps --services --filter status=running | sort | tr '\n' ' ')"

cli() { compose run --rm -T --no-deps cli "$@"; }

say "training a tiny CNN inside the compose network"
cli train --arch cnn --data "$work/data/small" --epochs 1 --img-size 32 --max-per-class 8 \
  --wait >"$work/train.log" 2>&1 || {
  cat "$work/train.log"
  fail "training"
}
tail -n 3 "$work/train.log" | sed 's/^/    /'

# -- scoring, with a worker killed and Redis restarted mid-job --------------------------------
job_json() {
  # Flower's container has the image and the settings; exec needs no new container per poll.
  # A poll that fails (the database busy, say) reads as no news.
  compose exec -T flower cxrq report job "$1" --format json 2>/dev/null ||
    echo '[{"state": "unknown", "done": 0}]'
}
field() { python3 -c "import json, sys; print(json.load(sys.stdin)[0]['$1'])"; }

score_t0=$(date +%s)
out=$(cli score "$work/data/score" --chunk-size 25)
while IFS= read -r line; do echo "    $line"; done <<<"$out"
job=$(echo "$out" | sed -n 's/^job \([0-9]*\):.*/\1/p' | head -n 1)
[ -n "$job" ] || fail "no job id in the output of cxrq score"

# Wait for rows, then kill the worker that is scoring: not the last chunk, so the job must
# still recover a chunk that a dead worker held.
for _ in $(seq 120); do
  done_rows=$(job_json "$job" | field "done")
  [ "$done_rows" -gt 0 ] && break
  sleep 0.5
done
[ "$done_rows" -gt 0 ] || fail "no progress within a minute"
[ "$done_rows" -lt "$n_images" ] || fail "job was over before the kill; raise CXRQ_TEST_COPIES"
victim=$(compose ps -q worker | head -n 1)
docker kill "$victim" >/dev/null
say "killed worker ${victim:0:12} at $done_rows/$n_images rows"
say "restarting redis"
compose restart redis >/dev/null 2>&1
kill_t=$(date +%s)

# The workers' database login, checked while they score: every PostgreSQL connection from a
# live worker replica is role cxrq_worker (not the owner, cxrq), and that role, logging in over
# the network with the workers' own URL and password, may add to the audit trail but not
# change it: UPDATE is refused by privilege (SQLSTATE 42501), before the append-only trigger.
worker_ids=$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
  --filter label=com.docker.compose.service=worker)
[ -n "$worker_ids" ] || fail "no worker replica running after the kill"
# shellcheck disable=SC2086  # one id per word
worker_ips=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' \
  $worker_ids | tr -s ' \n' ' ')
logins=$(compose exec -T postgres psql -U cxrq -d cxrq -AtF ' ' -c \
  "select usename, host(client_addr) from pg_stat_activity where client_addr is not null")
python3 - "$worker_ips" "$logins" <<'EOF' || fail "workers' database role"
import sys
ips = set(sys.argv[1].split())
rows = [line.split() for line in sys.argv[2].splitlines() if line.strip()]
users = sorted({r[0] for r in rows})
from_workers = [r[0] for r in rows if len(r) == 2 and r[1] in ips]
print(f"    pg_stat_activity: distinct usename {users}; {len(from_workers)} connections from "
      f"{len(ips)} live workers, as {sorted(set(from_workers))}")
sys.exit(0 if from_workers and set(from_workers) == {"cxrq_worker"} else 1)
EOF
# shellcheck disable=SC2086
docker exec -i "$(echo $worker_ids | cut -d' ' -f1)" python - <<'EOF' || fail "audit_log rights"
import os, sys
import sqlalchemy as sa

engine = sa.create_engine(os.environ["CXRQ_WORKER_DATABASE_URL"])
with engine.connect() as conn:
    user = conn.execute(sa.text("select current_user")).scalar()
    # INSERT is allowed; rolled back, so the trail is untouched.
    conn.execute(sa.text("insert into audit_log (at, actor, action, detail) "
                         "values (now(), 'compose-test', 'probe', '{}')"))
    conn.rollback()
    try:
        conn.execute(sa.text("update audit_log set why = why"))
        refused = "UPDATE went through"
    except sa.exc.DBAPIError as err:
        refused = f"{err.orig.sqlstate} {str(err.orig).splitlines()[0]}"
    conn.rollback()
print(f"    {user}: audit_log INSERT allowed, UPDATE refused: {refused}")
sys.exit(0 if user == "cxrq_worker" and refused.startswith("42501") else 1)
EOF

state=queued
while [ $(($(date +%s) - score_t0)) -lt "$JOB_TIMEOUT" ]; do
  json=$(job_json "$job")
  state=$(echo "$json" | field state)
  case $state in succeeded | partial | failed | cancelled) break ;; esac
  say "job $job $state: $(echo "$json" | field "done")/$n_images"
  sleep 5
done
say "job $job $state, $(($(date +%s) - kill_t)) s after the kill, $(($(date +%s) - score_t0)) s in all"
# How the dead worker's chunk came back, as the workers logged it (for the reader; not a check).
compose logs --no-color worker 2>/dev/null | grep -E 'sent again|redeliver' | head -n 5 |
  sed 's/^/    /' || true
[ "$state" = succeeded ] || {
  echo "$json"
  fail "job $job ended $state"
}

# -- checks ---------------------------------------------------------------------------------
cli report predictions "$job" --format csv >"$work/predictions.csv"
python3 - "$work/predictions.csv" "$n_images" <<'EOF' || fail "prediction rows"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n = int(sys.argv[2])
paths = [r["path"] for r in rows]
errors = [r for r in rows if r["error"]]
print(f"    {len(rows)} rows, {len(set(paths))} distinct paths, {len(errors)} errors, {n} images")
sys.exit(0 if len(rows) == n and len(set(paths)) == n and not errors else 1)
EOF
flower_auth=$(sed -n 's/^FLOWER_BASIC_AUTH=//p' "$work/env")
url="http://127.0.0.1:$FLOWER_PORT/"
without=$(curl -s -o /dev/null -w '%{http_code}' "$url")
# The password goes to curl on stdin, not on its command line.
with=$(echo "user = \"$flower_auth\"" | curl -s -o /dev/null -w '%{http_code}' -K - "$url")
say "flower: $without without the password, $with with it"
if [ "$without" != 401 ] || [ "$with" != 200 ]; then
  fail "flower answered $without/$with, not 401/200"
fi

# Prometheus re-resolves the service names and scrapes every 15 s: the killed replica is gone
# from DNS, the two left must be up and have counted images.
prom_check() {
  python3 - "$(curl -s --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/targets")" \
    "$(curl -s --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" \
      --data-urlencode 'query=sum(cxrq_images_scored_total)')" <<'EOF'
import json, sys
try:
    targets = json.loads(sys.argv[1])["data"]["activeTargets"]
    result = json.loads(sys.argv[2])["data"]["result"]
except (ValueError, KeyError):
    sys.exit(1)
up = [t for t in targets if t["labels"].get("service") == "worker" and t["health"] == "up"]
scored = float(result[0]["value"][1]) if result else 0.0
if len(up) >= 2 and scored > 0:
    print(f"{len(up)} worker replicas up, {scored:.0f} images scored by them")
else:
    sys.exit(1)
EOF
}
for _ in $(seq 24); do prom=$(prom_check) && break; sleep 5; done
[ -n "${prom:-}" ] || fail "prometheus did not scrape the workers within 2 minutes"
say "prometheus: $prom"
say "PASSED: job $job succeeded with one row per image after a worker kill and a Redis restart"
