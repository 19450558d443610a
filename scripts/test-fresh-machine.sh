#!/usr/bin/env bash
# The install scripts as on a fresh machine of this project's kind, without changing this one.
#
# 1. Mirror detection against sources laid out in scratch directories: deb822 with a
#    snapshot address in a comment before `URIs:`, a one-line `deb [options] URL` entry in
#    sources.list, commented-out entries only, and only a security archive.
# 2. In a private mount namespace whose /usr, /etc and /var are overlays (every change is
#    thrown away with the namespace): the bookworm-backports source is removed, QEMU's
#    packages are purged with dpkg, then `scripts/install-qemu.sh` must add the suite from
#    the deb822 `URIs:` line and install QEMU, and `qemu-system-x86_64 --version` must run.
#    With `--main-job`, `cargo xtask main-job` runs there instead of the bare script and
#    must boot the QEMU guest (not the local-shell fallback).
#
# Needs root (mount namespaces, dpkg) and Debian's mirror. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
main_job=false
[ "${1:-}" = --main-job ] && main_job=true
say() { echo "fresh-machine: $*"; }
fail() { echo "fresh-machine: FAILED: $*" >&2; exit 1; }

scratch=$(mktemp -d /tmp/lava-rs-fresh-machine.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# --- 1. mirror detection -------------------------------------------------------------
expect_mirror() {
    local name=$1 want=$2 got
    got=$(APT_SOURCES_DIR="$scratch/$name" bash scripts/install-qemu.sh --print-mirror)
    [ "$got" = "$want" ] || fail "mirror for $name: expected $want, found $got"
    say "mirror for $name: $got"
}
mkdir -p "$scratch"/{deb822,oneline,commented,security}/sources.list.d
cat > "$scratch/deb822/sources.list.d/debian.sources" <<'EOF'
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
EOF
printf '%s\n' '# deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main' \
    'deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] https://ftp.example.net/debian/ bookworm main' \
    > "$scratch/oneline/sources.list"
printf '%s\n' '# URIs: http://commented.example.org/debian' '#deb http://commented.example.org/debian bookworm main' \
    > "$scratch/commented/sources.list"
printf '%s\n' 'Types: deb' 'URIs: http://security.example.org/debian-security' 'Suites: bookworm-security' \
    > "$scratch/security/sources.list.d/debian.sources"
expect_mirror deb822 http://mirror.example.org/debian
expect_mirror oneline https://ftp.example.net/debian/
expect_mirror commented http://deb.debian.org/debian
expect_mirror security http://deb.debian.org/debian

# --- 2. a fresh machine in a mount namespace -----------------------------------------
[ "$(id -u)" = 0 ] || fail "needs root (mount namespace, dpkg)"
command -v unshare >/dev/null || fail "unshare (util-linux) is missing"
grep -qw overlay /proc/filesystems || fail "this kernel has no overlay filesystem"

export FRESH_SCRATCH=$scratch FRESH_ROOT=$root FRESH_MAIN_JOB=$main_job
unshare --mount --propagation private bash -euo pipefail -c '
    say() { echo "fresh-machine (namespace): $*"; }
    for dir in usr etc var; do
        mkdir -p "$FRESH_SCRATCH/overlay/$dir/upper" "$FRESH_SCRATCH/overlay/$dir/work"
        mount -t overlay "fresh-$dir" \
            -o "lowerdir=/$dir,upperdir=$FRESH_SCRATCH/overlay/$dir/upper,workdir=$FRESH_SCRATCH/overlay/$dir/work" "/$dir"
    done
    # as a new machine: no backports suite, no QEMU
    { grep -rlsE "^[^#]*bookworm-backports" /etc/apt/sources.list.d/ || true; } | xargs -r rm -v
    installed=$(dpkg-query -W -f="\${Package} \${Status}\n" qemu-system-x86 qemu-system-common qemu-system-data seabios 2>/dev/null \
        | awk "/ installed\$/ {print \$1}")
    if [ -n "$installed" ]; then
        say "dpkg --purge $(echo $installed)"
        dpkg --purge --force-depends $installed >/dev/null 2>&1
    fi
    if command -v qemu-system-x86_64 >/dev/null; then
        echo "qemu-system-x86_64 is still there after the purge" >&2
        exit 1
    fi
    say "QEMU removed, sources: $(ls /etc/apt/sources.list.d | tr "\n" " ")"
    cd "$FRESH_ROOT"
    mirror=$(bash scripts/install-qemu.sh --print-mirror)
    if [ "$FRESH_MAIN_JOB" = true ]; then
        say "cargo xtask main-job"
        # (tee to a file, not /dev/stderr: reopening that truncates a log file stderr goes to)
        log="$FRESH_SCRATCH/main-job.log"
        cargo xtask main-job 2>&1 | tee "$log" >&2
        # grep the file, not `echo | grep -q`: grep -q leaving early would fail the echo
        # with SIGPIPE under pipefail
        if grep -q "QEMU is not available" "$log"; then echo "main-job fell back to the local shell" >&2; exit 1; fi
        grep -qE "^lava +job +pass" "$log" || { echo "main-job did not pass" >&2; exit 1; }
    else
        bash scripts/install-qemu.sh
    fi
    grep -qsFx "URIs: $mirror" /etc/apt/sources.list.d/bookworm-backports.sources \
        || { echo "the backports source was not written from the deb822 URIs: line" >&2; exit 1; }
    say "$(qemu-system-x86_64 --version | head -n1)"
'
say "passed"
