#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager 1.20.2 from Debian bookworm's `kubernetes` source package,
# beside Debian's etcd, into .tools/kube-1.20.2/bin; the binaries are cached under
# ~/.cache/ecs-reinstall-operator/kube-1.20.2/ so that later runs on the same machine copy them and build nothing.
#
# Usage: tools/kube-apiserver/build.sh            (see README.md beside this file)
# Environment: REAL_KUBE=0 skips everything; KUBE_BUILD_KEEP=1 keeps the source tree and Go cache after a build;
#              KUBE_CACHE_DIR, KUBE_BUILD_DIR, KUBE_BIN_DIR override the three places below.
set -euo pipefail

KUBE_VERSION=1.20.2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${KUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-reinstall-operator/kube-$KUBE_VERSION}
WORK=${KUBE_BUILD_DIR:-$REPO/.tools/kube-build}
BIN=${KUBE_BIN_DIR:-$REPO/.tools/kube-$KUBE_VERSION/bin}
BINARIES=(kube-apiserver kube-controller-manager etcd)
BUILD_DEPS=(golang-go rsync golang-github-modern-go-reflect2-dev etcd-server dpkg-dev make)
STAMP="kube $KUBE_VERSION (Debian bookworm source, Go GOPATH build, reflect2 1.0.2, kube-openapi null fix)"

case "${REAL_KUBE:-auto}" in
  0|off|no|false|skip) echo "kube-apiserver: REAL_KUBE=${REAL_KUBE}: not building (the real-server tests skip)"; exit 0 ;;
esac

log() { echo "kube-apiserver: $*" >&2; }

have_all() {  # have_all DIR: every binary there and the stamp matches
  local dir=$1 b
  [[ -f "$dir/STAMP" && "$(cat "$dir/STAMP")" == "$STAMP" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

install_into() {  # install_into FROM TO: hard links where possible (same file system), else copies
  local from=$1 to=$2 b tmp
  tmp="$to.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  for b in "${BINARIES[@]}"; do ln "$from/$b" "$tmp/$b" 2>/dev/null || cp -p "$from/$b" "$tmp/$b"; done
  cp "$from/STAMP" "$tmp/STAMP"
  rm -rf "$to" && mkdir -p "$(dirname "$to")" && mv "$tmp" "$to"
}

# 1. Cheap paths: the tools folder is up to date, or the cache has the binaries.
if have_all "$BIN"; then exit 0; fi

mkdir -p "$WORK"
exec 9>"$WORK/.lock"
if ! flock -n 9; then log "another build holds $WORK/.lock; waiting"; flock 9; fi
if have_all "$BIN"; then exit 0; fi
if have_all "$CACHE"; then
  install_into "$CACHE" "$BIN"
  log "binaries copied from the cache $CACHE"
  exit 0
fi

# 2. The cold build. Its log goes to $WORK/build.log; a failure leaves its reason in $WORK/FAILED.
START=$(date +%s)
rm -f "$WORK/FAILED"
LOG="$WORK/build.log"
: >"$LOG"
fail() {
  { echo "$*"; echo "last lines of $LOG:"; tail -n 5 "$LOG"; } >"$WORK/FAILED"
  log "FAILED: $* (log: $LOG)"
  exit 1
}
trap 'rc=$?; if [[ $rc -ne 0 && ! -f "$WORK/FAILED" ]]; then { echo "build step failed (exit $rc), last lines of $LOG:"; tail -n 15 "$LOG"; } >"$WORK/FAILED"; cat "$WORK/FAILED" >&2; fi' EXIT
run() { log "$*"; "$@" >>"$LOG" 2>&1; }

log "cold build of $KUBE_VERSION (about 4 minutes on 2 cores); log: $LOG"

# 2a. Build dependencies from Debian (as root with apt-get; otherwise they must be there already).
missing=()
for pkg in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    fail "missing Debian packages ${missing[*]} and not root: run 'sudo apt-get install ${missing[*]}' once, or make this as root"
  fi
  run apt-get update -q || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive run apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || fail "apt-get install ${missing[*]} failed"
fi
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -f "$REFLECT2/go_above_118.go" ]] || fail "$REFLECT2 is not reflect2 >= 1.0.2"

# 2b. The source, with a private apt configuration: deb-src lines for bookworm built from the machine's URIs.
APT_DIR="$WORK/apt"
rm -rf "$APT_DIR" && mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d" \
  "$APT_DIR/preferences.d"
python3 "$HERE/sources.py" bookworm >"$APT_DIR/sources.list" || fail "no bookworm apt source on this machine"
APT_OPTS=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
  -o "Dir::Etc::Preferences=$APT_DIR/preferences"
  -o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache=$APT_DIR/cache"
  -o "APT::Sandbox::User=root"
)
[[ $(id -u) -eq 0 ]] || APT_OPTS+=(-o "Debug::NoLocking=1")
run apt-get "${APT_OPTS[@]}" update -q || fail "apt-get update (private, deb-src bookworm) failed"
SRC="$WORK/src"
rm -rf "$SRC" && mkdir -p "$SRC"
(cd "$SRC" && run apt-get "${APT_OPTS[@]}" source -q kubernetes) || fail "apt-get source kubernetes failed"
TREE=$(find "$SRC" -maxdepth 1 -type d -name "kubernetes-*really$KUBE_VERSION" | head -n1)
[[ -n "$TREE" ]] || fail "the kubernetes source package is not upstream $KUBE_VERSION: $(ls "$SRC")"
DEB_VERSION=$(cd "$TREE" && dpkg-parsechangelog -S Version)
log "source: kubernetes $DEB_VERSION"

# 2c. GOPATH mode: 1.20 predates module builds of the whole tree.
GOPATH_DIR="$WORK/gopath"
rm -rf "$GOPATH_DIR" && mkdir -p "$GOPATH_DIR/src/k8s.io"
mv "$TREE" "$GOPATH_DIR/src/k8s.io/kubernetes"
K="$GOPATH_DIR/src/k8s.io/kubernetes"
export GOPATH="$GOPATH_DIR" GO111MODULE=off GOFLAGS= CGO_ENABLED=0 GOCACHE="$WORK/gocache" HOME="$WORK/home"
mkdir -p "$HOME"

# 2d. Fixes for Go >= 1.18 (the code was written for Go 1.15):
# - reflect2 1.0.1 segfaults the server on the first custom-resource create: take Debian's 1.0.2;
rm -rf "$K/vendor/github.com/modern-go/reflect2"
cp -r "$REFLECT2" "$K/vendor/github.com/modern-go/reflect2"
# - kube-openapi's type validator takes a zero value ("", 0, false) for null, so a status patch with an empty
#   condition message gets 422; upstream kube-openapi #230 (in 1.21) tests only data == nil.
TYPE_GO="$K/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"
sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$TYPE_GO"
grep -q '^	if data == nil {$' "$TYPE_GO" || fail "the kube-openapi null fix did not apply to $TYPE_GO"

# 2e. pkg/generated/openapi/zz_generated.openapi.go is not in the tarball: upstream's make target makes it.
(cd "$K" && run make gen_openapi) || fail "make gen_openapi failed"
[[ -f "$K/pkg/generated/openapi/zz_generated.openapi.go" ]] || fail "make gen_openapi made no zz_generated.openapi.go"

# 2f. The binaries, versioned as upstream's release so that /version says v1.20.2.
PKG=k8s.io/kubernetes/vendor/k8s.io
LDFLAGS="-s -w"
for p in client-go/pkg/version component-base/version; do
  LDFLAGS+=" -X $PKG/$p.gitVersion=v$KUBE_VERSION -X $PKG/$p.gitMajor=1 -X $PKG/$p.gitMinor=20"
  LDFLAGS+=" -X $PKG/$p.gitTreeState=clean -X $PKG/$p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
OUT="$WORK/out"
rm -rf "$OUT" && mkdir -p "$OUT"
for cmd in kube-apiserver kube-controller-manager; do
  log "go build cmd/$cmd"
  (cd "$K" && go build -o "$OUT/$cmd" -ldflags "$LDFLAGS" "k8s.io/kubernetes/cmd/$cmd" >>"$LOG" 2>&1) || fail "go build $cmd failed"
done
cp -p "$(command -v etcd || echo /usr/bin/etcd)" "$OUT/etcd" || fail "no etcd binary (Debian's etcd-server)"
"$OUT/kube-apiserver" --version >>"$LOG" 2>&1 || fail "the built kube-apiserver does not run"
echo "$STAMP" >"$OUT/STAMP"
{ echo "debian source: kubernetes $DEB_VERSION"; go version; "$OUT/etcd" --version | head -n1; } >"$OUT/BUILD-INFO"

# 3. Into the cache (atomically), then into the tools folder.
mkdir -p "$(dirname "$CACHE")"
rm -rf "$CACHE.tmp.$$" && cp -rp "$OUT" "$CACHE.tmp.$$" && rm -rf "$CACHE" && mv "$CACHE.tmp.$$" "$CACHE"
install_into "$CACHE" "$BIN"
if [[ "${KUBE_BUILD_KEEP:-0}" != 1 ]]; then
  chmod -R u+w "$WORK/gopath" "$WORK/gocache" 2>/dev/null || true
  rm -rf "$WORK/gopath" "$WORK/gocache" "$WORK/src" "$WORK/out" "$WORK/apt" "$WORK/home"
fi
log "built in $(($(date +%s) - START)) s: $(cat "$CACHE/BUILD-INFO" | head -n1); binaries in $BIN, cached in $CACHE"
