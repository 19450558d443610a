#!/usr/bin/env bash
# Install QEMU for the embedded default device. The machine image carries qemu-utils from
# Debian bookworm-backports, which breaks bookworm's own qemu-system-common, so QEMU comes
# from bookworm-backports too. Needs root; idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=600"
if command -v qemu-system-x86_64 >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-qemu: not root, cannot install QEMU" >&2
    exit 1
fi
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    uri=$(grep -rhoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n1)
    uri=${uri:-http://deb.debian.org/debian}
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        > /etc/apt/sources.list.d/bookworm-backports.sources
fi
$APT update -qq
$APT install -y -qq --no-install-recommends \
    qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports \
    qemu-system-data/bookworm-backports seabios/bookworm-backports >/dev/null
