#!/usr/bin/env bash
# Install QEMU for the embedded default device. The machine image carries qemu-utils from
# Debian bookworm-backports, which breaks bookworm's own qemu-system-common, so QEMU comes
# from bookworm-backports too. Needs root; idempotent; says what it does and fails loudly.
#
# The backports suite is added with the mirror of the machine's own Debian source: the
# `URIs:` field of deb822 files (/etc/apt/sources.list.d/*.sources) or the address of a
# one-line `deb` entry (/etc/apt/sources.list, *.list); comments are never read.
#
# Environment (for tests): APT_SOURCES_DIR (default /etc/apt), QEMU_PACKAGES (default: the
# x86 system emulator, its -common and -data, and SeaBIOS), QEMU_BINARY (what must be on
# PATH afterwards, default qemu-system-x86_64). `install-qemu.sh --print-mirror` prints the
# mirror it would use and exits (no root needed).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=600"
SOURCES=${APT_SOURCES_DIR:-/etc/apt}
QEMU_BINARY=${QEMU_BINARY:-qemu-system-x86_64}
QEMU_PACKAGES=${QEMU_PACKAGES:-qemu-system-x86 qemu-system-common qemu-system-data seabios}

say() { echo "install-qemu: $*" >&2; }

if [ "${1:-}" != --print-mirror ] && command -v "$QEMU_BINARY" >/dev/null; then
    exit 0
fi
if [ "${1:-}" != --print-mirror ] && [ "$(id -u)" != 0 ]; then
    say "$QEMU_BINARY is missing and this is not root: cannot install QEMU (run as root)"
    exit 1
fi

# The first Debian mirror named by an active source: deb822 `URIs:` lines first, then
# one-line entries. Security and snapshot archives are not mirrors of the main suite.
debian_mirror() {
    local files=()
    shopt -s nullglob
    files+=("$SOURCES"/sources.list.d/*.sources)
    [ -f "$SOURCES/sources.list" ] && files+=("$SOURCES/sources.list")
    files+=("$SOURCES"/sources.list.d/*.list)
    shopt -u nullglob
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
        /^[ \t]*#/ { next }
        tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i; next }
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }
    ' "${files[@]}" | grep -E '^https?://[^ ]+/debian/?$' | head -n1 || true
}

suite_configured() {
    grep -rqsE '^[^#]*bookworm-backports' "$SOURCES/sources.list" "$SOURCES/sources.list.d/" 2>/dev/null
}

if [ "${1:-}" = --print-mirror ]; then
    uri=$(debian_mirror)
    echo "${uri:-http://deb.debian.org/debian}"
    exit 0
fi

if suite_configured; then
    say "bookworm-backports is already an apt source"
else
    uri=$(debian_mirror)
    if [ -z "$uri" ]; then
        uri=http://deb.debian.org/debian
        say "no Debian mirror found in $SOURCES; using $uri"
    fi
    target="$SOURCES/sources.list.d/bookworm-backports.sources"
    say "adding bookworm-backports from $uri ($target)"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        > "$target"
fi

say "apt-get update"
if ! out=$($APT update -q 2>&1); then
    echo "$out" >&2
    say "apt-get update failed (above)"
    exit 1
fi
packages=()
for p in $QEMU_PACKAGES; do packages+=("$p/bookworm-backports"); done
say "apt-get install ${packages[*]}"
if ! out=$($APT install -y -q --no-install-recommends "${packages[@]}" 2>&1); then
    echo "$out" >&2
    say "apt-get install failed (above)"
    exit 1
fi
if ! command -v "$QEMU_BINARY" >/dev/null; then
    say "installed ${packages[*]}, but $QEMU_BINARY is still not on PATH"
    exit 1
fi
say "$("$QEMU_BINARY" --version | head -n1)"
