#!/usr/bin/env bash
# Build the operator's container image from the repository's Dockerfile with Debian's podman, as root, on this
# machine, with no container registry: the `python:3.11-slim` base is stood in for by a Debian bookworm root
# filesystem (tools/image/base.sh), imported with `podman import` and cached as a tarball under
# ~/.cache/ecs-reinstall-operator/image-base/, keyed by its recipe and mirror. The image is tagged
# localhost/ecs-reinstall-operator:VERSION, labelled with the project's version and git revision, and described in
# .tools/image/image.json for the image tests (tests/image).
#
# Usage: tools/image/build.sh        (`make image`; see docs/image.md)
# Environment: IMAGE_TIER=0 (or off/no/false/skip) skips everything; IMAGE_CACHE_DIR overrides the base cache.
# Podman runs with its own configuration and storage under .tools/image/ (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF), never the machine's /etc/containers or /var/lib/containers:
#   - default ulimits at or below what this machine lets podman grant, detected at run time (podman's defaults
#     exceed the hard limits of these VMs: "setrlimit ... operation not permitted");
#   - runc, cgroupfs and a file event log (crun refuses the hybrid cgroup v1/v2 layout; no systemd, no journald);
#   - everything on the host network (loopback only: no bridge, no CNI);
#   - its state and locks in a directory of its own under /run (file locks, not the machine-wide /dev/shm table).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${IMAGE_WORK_DIR:-$REPO/.tools/image}
CACHE=${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-reinstall-operator/image-base}
PACKAGES=(podman buildah debootstrap runc)
IMAGE_NAME=localhost/ecs-reinstall-operator
BASE_NAME=localhost/ecs-reinstall-operator-python-base
# Inside the base, the bundle Debian's pip and Python's ssl module use; the host's is mounted over it while
# building only (the base has the file: a bind mount at a missing path would leave an empty file in the image).
IMAGE_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

case "${IMAGE_TIER:-auto}" in
  0|off|no|false|skip) echo "image: IMAGE_TIER=${IMAGE_TIER}: not building (the image tests skip)"; exit 0 ;;
esac

log() { echo "image: $*" >&2; }
fail() {
  { mkdir -p "$WORK" && echo "$*" >"$WORK/FAILED"; } 2>/dev/null || true
  log "FAILED: $*"
  exit 1
}
[[ $(id -u) -eq 0 ]] || fail "not root (uid $(id -u)): podman and debootstrap build the image as root here; run make as root, or IMAGE_TIER=0 to skip the image tier"
mkdir -p "$WORK"
rm -f "$WORK/FAILED"
LOG="$WORK/build.log"
: >"$LOG"
run() { "$@" >>"$LOG" 2>&1; }
trap 'rc=$?; if [[ $rc -ne 0 && ! -f "$WORK/FAILED" ]]; then { echo "build step failed (exit $rc), last lines of $LOG:"; tail -n 15 "$LOG"; } >"$WORK/FAILED"; cat "$WORK/FAILED" >&2; fi' EXIT

exec 9>"$WORK/.lock"
if ! flock -n 9; then log "another build holds $WORK/.lock; waiting"; flock 9; fi
START=$(date +%s)

# 1. The tools, from Debian (as root with apt-get; the package lists are refreshed only when the install fails).
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! run apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    run apt-get update -q || fail "apt-get update failed (log: $LOG)"
    run apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || fail "apt-get install ${missing[*]} failed (log: $LOG)"
  fi
fi

# 2. Podman's configuration and storage, private to this checkout.
# nofile: the machine's hard limit. nproc: the hard limit, but at most what podman keeps for itself (it lowers its
# own RLIMIT_NPROC to 32768 at start, and a container cannot get more than its runtime has); both then checked by
# a probe container below.
hard_nofile=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu)
[[ $hard_nofile == unlimited ]] && hard_nofile=1048576
[[ $hard_nproc == unlimited ]] && hard_nproc=32768
nofile=$((hard_nofile < 1048576 ? hard_nofile : 1048576))
nproc=$((hard_nproc < 32768 ? hard_nproc : 32768))
# podman's own state (exit files, locks) under /run, per checkout: no sharing with the machine's podman or another
# checkout's (sharing /run/libpod and the /dev/shm lock table, a run once waited 20 s for every container's exit).
LIBPOD_TMP=/run/ecs-reinstall-operator-image/$(echo "$WORK" | sha256sum | cut -c1-12)
[[ -e "$WORK/storage/libpod" ]] || rm -rf "$LIBPOD_TMP"  # new storage: no state of an earlier one
mkdir -p "$WORK/storage" "$WORK/run" "$LIBPOD_TMP"
cat >"$WORK/containers.conf" <<EOF
# Written by tools/image/build.sh: podman for the image tier (CONTAINERS_CONF). Limits detected on $(hostname).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "host"
log_driver = "k8s-file"

[engine]
tmp_dir = "$LIBPOD_TMP"
lock_type = "file"
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/run/events.log"
EOF
cat >"$WORK/storage.conf" <<EOF
# Written by tools/image/build.sh: the image tier's container storage (CONTAINERS_STORAGE_CONF).
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
podman --version >>"$LOG"

# 3. The base: imported from the cached tarball, made first when there is none for this recipe and mirror.
MIRROR=$(python3 "$REPO/tools/kube-apiserver/sources.py" bookworm 2>/dev/null \
  | awk '$1=="deb-src" && $(NF-1)=="bookworm" && $NF=="main" {print $(NF-2); exit}')
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ARCH=$(dpkg --print-architecture)
BASE_KEY=$( { cat "$HERE/base.sh"; echo "$MIRROR $ARCH"; } | sha256sum | cut -c1-16)
BASE_REF="$BASE_NAME:3.11-slim-bookworm-$BASE_KEY"
BASE_TAR="$CACHE/python-3.11-slim-bookworm-$ARCH-$BASE_KEY.tar"
import_base() {
  podman image rm -f "$BASE_REF" >>"$LOG" 2>&1 || true
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$BASE_TAR" "$BASE_REF" >>"$LOG" 2>&1
}
probe_base() {  # Python 3.11 runs in it, with this configuration's ulimits
  podman run --rm --pull=never --network host "$BASE_REF" python -c \
    'import sys, resource; assert sys.version_info[:2] == (3, 11), sys.version; print(resource.getrlimit(resource.RLIMIT_NPROC))' >>"$LOG" 2>&1
}
base_made=0
if ! podman image exists "$BASE_REF"; then
  if [[ -f "$BASE_TAR" ]] && import_base; then
    log "base $BASE_REF imported from the cache $BASE_TAR"
  else
    log "making the base (debootstrap of bookworm from $MIRROR, about a minute); log: $LOG"
    base_started=$(date +%s)
    mkdir -p "$CACHE"
    rm -f "$BASE_TAR"
    run bash "$HERE/base.sh" "$BASE_TAR" "$MIRROR" || fail "making the base failed: see $LOG"
    import_base || fail "podman import of $BASE_TAR failed: see $LOG"
    base_made=$(($(date +%s) - base_started))
    log "base made in ${base_made} s: $BASE_TAR ($(du -m "$BASE_TAR" | cut -f1) MB)"
  fi
fi
if ! probe_base; then
  grep -q -i rlimit "$LOG" && fail "a container cannot start with ulimits nofile=$nofile nproc=$nproc: $(grep -i rlimit "$LOG" | tail -n1)"
  fail "the base $BASE_REF does not run Python 3.11: see $LOG"
fi

# 4. The image. The host's CA bundle (the one this machine's pip trusts) replaces the base's for the build only.
host_ca=${PIP_CERT:-}
[[ -n $host_ca ]] || host_ca=$(python3 -m pip config get global.cert 2>/dev/null || true)
[[ -n $host_ca ]] || host_ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $host_ca ]] || fail "no CA bundle at $host_ca for pip inside the build"
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("'"$REPO"'/pyproject.toml", "rb"))["project"]["version"])' 2>/dev/null \
  || sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)
REVISION=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=$( [[ -n "$(git -C "$REPO" status --porcelain -- $(python3 "$HERE/context.py" --list "$REPO") 2>/dev/null)" ]] && echo true || echo false)
CONTEXT_DIGEST=$(python3 "$HERE/context.py" "$REPO")
IMAGE_REF="$IMAGE_NAME:$VERSION"
log "building $IMAGE_REF (revision ${REVISION:0:12}$([[ $DIRTY == true ]] && echo ', uncommitted changes'))"
build_started=$(date +%s)
(cd "$REPO" && podman build --pull=never --layers --network host \
  --volume "$host_ca:$IMAGE_CA_BUNDLE:ro" \
  --build-arg "PYTHON_IMAGE=$BASE_REF" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
  --file Dockerfile --tag "$IMAGE_REF" . >>"$LOG" 2>&1) || fail "podman build failed: $(tail -n 3 "$LOG" | tr '\n' ' ')"
build_seconds=$(($(date +%s) - build_started))
IMAGE_ID=$(podman image inspect --format '{{.Id}}' "$IMAGE_REF")
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE_REF")
BASE_SIZE=$(podman image inspect --format '{{.Size}}' "$BASE_REF")
# Dangling layers of earlier builds (a day old and more) go; the recent ones stay as the build cache.
podman image prune -f --filter until=24h >>"$LOG" 2>&1 || true

python3 - "$WORK/image.json" <<EOF
import json, sys
json.dump({
    "ref": "$IMAGE_REF", "id": "$IMAGE_ID", "version": "$VERSION", "revision": "$REVISION",
    "dirty": $([[ $DIRTY == true ]] && echo True || echo False), "context_digest": "$CONTEXT_DIGEST",
    "size_bytes": $SIZE, "base_ref": "$BASE_REF", "base_size_bytes": $BASE_SIZE, "base_tarball": "$BASE_TAR",
    "base_made_seconds": $base_made, "build_seconds": $build_seconds,
    "total_seconds": $(($(date +%s) - START)), "ulimits": {"nofile": $nofile, "nproc": $nproc},
    "containers_conf": "$CONTAINERS_CONF", "storage_conf": "$CONTAINERS_STORAGE_CONF",
}, open(sys.argv[1], "w"), indent=2)
EOF
log "$IMAGE_REF ${IMAGE_ID:0:12}: $((SIZE / 1000000)) MB (base $((BASE_SIZE / 1000000)) MB); build ${build_seconds} s, all $(($(date +%s) - START)) s"
