#!/usr/bin/env bash
# Local stand-ins for the public base images, made from Debian bookworm packages, for machines
# that reach a Debian mirror but no image registry:
#
#   cxrq-local/python:3.11   for python:3.11-slim   (Debian's python3 is 3.11)
#   cxrq-local/redis:7       for redis:7-alpine     (Debian's redis-server 7.0)
#   cxrq-local/postgres:15   for postgres:16-alpine (bookworm ships PostgreSQL 15)
#   cxrq-local/prometheus:2  for prom/prometheus:v2.53.0 (Debian's prometheus 2.42)
#
# debootstrap makes a minimal root file system, apt installs each image's packages into a copy of
# it (on this machine, through chroot: containers here have no route out), `docker import` turns
# the folder into an image and a small `docker build` adds what the official images set up
# (entrypoint, user, data folder). Use them through .env:
#
#   PYTHON_IMAGE=cxrq-local/python:3.11 REDIS_IMAGE=cxrq-local/redis:7
#   POSTGRES_IMAGE=cxrq-local/postgres:15 PROMETHEUS_IMAGE=cxrq-local/prometheus:2
#
# Needs root (debootstrap, chroot), debootstrap, and a running Docker engine. Reruns are quick:
# the root file systems are kept under build/local-images/, and an image whose inputs did not
# change is left alone. MIRROR=URL picks the Debian mirror, REBUILD=1 starts from scratch.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=build/local-images
HERE=scripts/compose/local-images

# name, tag and the packages apt adds to the minimal base.
declare -A TAG=(
  [python]=cxrq-local/python:3.11
  [redis]=cxrq-local/redis:7
  [postgres]=cxrq-local/postgres:15
  [prometheus]=cxrq-local/prometheus:2
)
declare -A PACKAGES=(
  # python3-venv: the Dockerfile installs into a venv (Debian's own pip refuses system installs);
  # passwd: useradd for the image's unprivileged user.
  [python]="python3 python3-venv python-is-python3 passwd netbase ca-certificates tzdata"
  [redis]="redis-server redis-tools"
  [postgres]="postgresql-15 postgresql-client-15"
  [prometheus]="prometheus"
)

if [ "$(id -u)" != 0 ]; then
  echo "run as root: debootstrap and chroot need it" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: apt-get install debootstrap" >&2
  exit 1
}
docker info >/dev/null 2>&1 || {
  echo "no Docker engine answers (start dockerd first)" >&2
  exit 1
}

mkdir -p "$CACHE"
[ "${REBUILD:-0}" = 1 ] && rm -f "$CACHE"/*.tar "$CACHE"/*.inputs

# The minimal base, made once. minbase: only Essential packages and apt.
base_tar=$CACHE/$SUITE-minbase.tar
if [ ! -s "$base_tar" ]; then
  echo "== debootstrap $SUITE (once; kept in $base_tar)"
  dir=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
    tail -n 30 "$CACHE/debootstrap.log" >&2
    exit 1
  }
  tar -C "$dir" --numeric-owner -cf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  rm -rf "$dir"
  trap - EXIT
fi

# apt inside a copy of the base. The chroot borrows the host's /proc and DNS for the duration;
# services are never started (policy-rc.d), and apt's lists are dropped afterwards.
make_rootfs() {
  local name=$1 out=$2 dir
  dir=$(mktemp -d "$CACHE/$name.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $dir is local
  trap "umount '$dir/proc' 2>/dev/null || true; rm -rf '$dir'" EXIT
  tar -C "$dir" -xpf "$base_tar"
  cat >"$dir/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  # As in Debian's slim images: no manuals, docs or translations (copyright notices stay).
  cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
  if [ "$name" = postgres ]; then
    # The image's entrypoint creates the cluster in the volume; the package must not make one.
    mkdir -p "$dir/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" >"$dir/etc/postgresql-common/createcluster.d/no-main.conf"
  fi
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  mount -t proc proc "$dir/proc"
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -ec "apt-get update -qq
            apt-get upgrade -y -qq
            apt-get install -y -qq --no-install-recommends ${PACKAGES[$name]}
            apt-get clean" >"$CACHE/$name-apt.log" 2>&1 || {
    tail -n 30 "$CACHE/$name-apt.log" >&2
    exit 1
  }
  umount "$dir/proc"
  rm -rf "$dir/var/lib/apt/lists/"* "$dir/var/cache/apt/"*.bin "$dir/usr/sbin/policy-rc.d" \
    "$dir/var/log/"*.log "$dir/var/log/apt/"*
  : >"$dir/etc/resolv.conf" # Docker mounts its own
  tar -C "$dir" --numeric-owner -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$dir"
  trap - EXIT
}

for name in python redis postgres prometheus; do
  tag=${TAG[$name]}
  # Everything that goes into the image; the image carries it as a label so an unchanged one is
  # not rebuilt.
  inputs=$( (
    echo "$SUITE ${PACKAGES[$name]}"
    sha256sum "$base_tar" | cut -d' ' -f1
    cat "$HERE/$name"/*
  ) | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{ index .Config.Labels "cxrq.inputs" }}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$inputs" ]; then
    echo "== $tag is up to date"
    continue
  fi
  rootfs=$CACHE/$name-rootfs.tar
  if [ ! -s "$rootfs" ] || [ "$(cat "$rootfs.inputs" 2>/dev/null)" != "${PACKAGES[$name]}" ]; then
    echo "== $tag: installing ${PACKAGES[$name]}"
    make_rootfs "$name" "$rootfs"
    echo "${PACKAGES[$name]}" >"$rootfs.inputs"
  fi
  echo "== $tag: docker import + build"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$rootfs" "cxrq-local/$name-rootfs:latest" >/dev/null
  # DOCKER_BUILDKIT=0: the classic builder needs no buildx plugin, and the FROM image is local.
  DOCKER_BUILDKIT=0 docker build --build-arg "BASE=cxrq-local/$name-rootfs:latest" \
    --label "cxrq.inputs=$inputs" -t "$tag" "$HERE/$name" >"$CACHE/$name-build.log" 2>&1 || {
    cat "$CACHE/$name-build.log" >&2
    exit 1
  }
  docker image rm "cxrq-local/$name-rootfs:latest" >/dev/null
done
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^cxrq-local/'
