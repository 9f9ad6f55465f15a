#!/usr/bin/env bash
# Build a Debian bookworm base image offline (no registry needed): debootstrap a minimal root
# filesystem from the Debian mirror apt already uses, then `docker import` it.
# Usage: docker/base-image.sh IMAGE:TAG      (needs root, debootstrap and a running Docker Engine)
set -euo pipefail
image="${1:?usage: $0 IMAGE:TAG}"
mirror="${DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | head -1 || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null || { echo "base-image: installing debootstrap"; apt-get install -y -qq debootstrap >/dev/null; }
rootfs="$(mktemp -d /tmp/bookworm-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" | grep -E '^I: (Retrieving Release|Base system installed)' || true
test -x "$rootfs/bin/sh" || { echo "base-image: debootstrap failed"; exit 1; }
# Security updates and bookworm-updates, as the official Debian images have.
cat > "$rootfs/etc/apt/sources.list" <<LIST
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian*}/debian-security bookworm-security main
LIST
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
echo "base-image: importing as $image"
tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "base-image: $image ready"
