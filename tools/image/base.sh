#!/usr/bin/env bash
# Make a root filesystem tarball that stands in for the official python:3.11-slim image, from Debian bookworm
# itself (no container registry is needed): debootstrap's minbase with Python 3.11, pip and venv, slimmed the way
# the Debian "slim" images are. build.sh imports it with `podman import` and points the Dockerfile's PYTHON_IMAGE
# at it. What the Dockerfile relies on of python:3.11-slim, the stand-in has too:
#   - `python` on PATH (here /usr/local/bin/python -> python3), and `python -m pip install` allowed as root
#     (bookworm marks its Python "externally managed": that marker is removed; pip installs into /usr/local);
#   - groupadd/useradd (passwd), the system CA bundle /etc/ssl/certs/ca-certificates.crt (ca-certificates),
#     /etc/services and /etc/protocols (netbase);
#   - no compiler, no apt lists or caches, no documentation, man pages or locales.
# The cache key in build.sh is a hash of this file (with the mirror): change the recipe and a new base is made.
#
# Usage: tools/image/base.sh OUT.tar MIRROR_URL        (as root: debootstrap needs it)
set -euo pipefail

OUT=$1
MIRROR=$2
SUITE=bookworm
PACKAGES=python3,python3-pip,python3-venv,ca-certificates,netbase

ROOTFS=$(mktemp -d "${OUT}.rootfs.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# pip may install as root (into /usr/local, as in python:3.11-slim), and `python` is a command.
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
chroot "$ROOTFS" python --version >/dev/null

# What Debian's slim images leave out, also for packages installed later (dpkg path excludes).
mkdir -p "$ROOTFS/etc/dpkg/dpkg.cfg.d"
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# No package lists, download caches or logs; the container engine provides these files at run time.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/var/lib/dpkg/*-old "$ROOTFS"/var/log/* "$ROOTFS"/root/.cache "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
rm -f "$ROOTFS/etc/resolv.conf" "$ROOTFS/etc/hostname" "$ROOTFS/etc/machine-id"
: >"$ROOTFS/etc/machine-id"
# apt would look for lists here: keep the directory, as the Debian images do.
mkdir -p "$ROOTFS/var/lib/apt/lists/partial"

tar --numeric-owner --xattrs --sort=name -C "$ROOTFS" -cf "$OUT.tmp" .
mv "$OUT.tmp" "$OUT"
