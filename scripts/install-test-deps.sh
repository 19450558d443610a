#!/usr/bin/env bash
# Install the tools the test suite drives for real: busybox and dash (helper scripts run
# under both), git (test definitions), GNU time (benchmarks), LAVA's own coordinator and
# dispatcher (interop and reference runs), OpenSSH's server and client (the SSH tests start
# their own sshd on a loopback port; no system sshd is used), QEMU (the embedded default
# device), Python with PyYAML and Jinja2 (LAVA's checkers and the reference renderer), dpkg
# tools and man (the package test), cargo-deny (the supply-chain check), Debian's
# lava-server and PostgreSQL (the lab: install_lab). Needs root; idempotent; fails loudly
# with apt's error.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=600"
say() { echo "install-test-deps: $*" >&2; }

# apt_install_for TESTS PACKAGE...: install the packages (none given: nothing to do). Not
# root: says that TESTS ("the NBD tests") will skip and returns 1. apt's error ends the script.
apt_install_for() {
    local tests=$1
    shift
    [ $# -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot install $* ($tests will skip)"
        return 1
    fi
    say "apt-get install $*"
    if ! out=$($APT install -y -q --no-install-recommends "$@" 2>&1); then
        echo "$out" >&2
        say "apt-get install $* for $tests failed (above)"
        exit 1
    fi
}

# missing_packages PACKAGE...: prints (space-separated) those dpkg does not have installed.
missing_packages() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    echo "${missing[*]}"
}

if [ "$(id -u)" != 0 ]; then
    if [ "${CI:-}" = true ]; then
        say "CI=true but not root: cannot install the test tools"
        exit 1
    fi
    say "not root, skipping apt installs (tests needing tools will skip)"
else
    packages=(busybox-static dash git time cpio lava-coordinator lava-dispatcher
        openssh-server openssh-client man-db fakeroot logrotate dpkg-dev)
    # QEMU first, from bookworm-backports: lava-dispatcher depends on qemu-system-x86, and
    # bookworm's own would not go with the image's qemu-utils from backports.
    bash "$(dirname "$0")/install-qemu.sh"
    say "apt-get update"
    if ! out=$($APT update -q 2>&1); then echo "$out" >&2; say "apt-get update failed (above)"; exit 1; fi
    say "apt-get install ${packages[*]}"
    if ! out=$($APT install -y -q --no-install-recommends "${packages[@]}" 2>&1); then
        echo "$out" >&2
        say "apt-get install failed (above)"
        exit 1
    fi
fi

# Disposable chroots (issue 18): schroot, for bins/lava-dispatch/tests/e2e_schroot.rs,
# which registers a busybox file-type chroot of its own in /etc/schroot and removes it.
install_schroot_rig() {
    if command -v schroot >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        say "not root, skipping schroot (the schroot tests will skip)"
        return
    fi
    say "apt-get install schroot"
    if ! out=$($APT install -y -q --no-install-recommends schroot 2>&1); then
        echo "$out" >&2
        say "apt-get install schroot failed (above)"
        exit 1
    fi
    if ! command -v schroot >/dev/null 2>&1; then
        say "schroot is still missing after apt-get install"
        exit 1
    fi
}
install_schroot_rig

# QEMU overlay shapes (docs/qemu-overlays.md): lava-rs builds LAVA's overlay disk with
# mke2fs and qemu-img, and writes overlays into ext images with debugfs. e2fsprogs is not in
# a minimal bookworm; qemu-utils comes from bookworm-backports like the rest of QEMU.
install_qemu_overlay_tools() {
    [ "$(id -u)" = 0 ] || return 0
    if [ ! -x /usr/sbin/mke2fs ] || [ ! -x /usr/sbin/debugfs ]; then
        say "apt-get install e2fsprogs"
        if ! out=$($APT install -y -q --no-install-recommends e2fsprogs 2>&1); then
            echo "$out" >&2; say "apt-get install e2fsprogs failed (above)"; exit 1
        fi
    fi
    QEMU_PACKAGES=qemu-utils QEMU_BINARY=qemu-img bash "$(dirname "$0")/install-qemu.sh"
}
install_qemu_overlay_tools

# --- the lab (cargo xtask lab, bins/lava-dispatch/tests/e2e_server.rs) ------------------
# Debian's lava-server 2023.01 and PostgreSQL. No service is started here (a policy-rc.d
# denies starts while dpkg runs, and there is no systemd): the lab starts PostgreSQL,
# configures lava-server's database (its postinst skips that while PostgreSQL is down),
# migrates and runs gunicorn and the scheduler itself (lava_test_support::lab).
install_lab() {
    local lab_packages=(postgresql lava-server) policy=/usr/sbin/policy-rc.d created=false
    if [ -x /usr/bin/lava-server ] && [ -x /usr/lib/postgresql/15/bin/postgres ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        say "not root, skipping lava-server (the lab tests will skip)"
        return 0
    fi
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# install-test-deps: no service starts while installing\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        created=true
    fi
    say "apt-get install ${lab_packages[*]}"
    # Debian's maintainer scripts run Debian's python3 (not a python3 earlier on PATH).
    if ! out=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin $APT install -y -q --no-install-recommends \
        "${lab_packages[@]}" 2>&1); then
        echo "$out" >&2
        [ "$created" = true ] && rm -f "$policy"
        say "apt-get install of the lab failed (above)"
        exit 1
    fi
    [ "$created" = true ] && rm -f "$policy"
    return 0
}
install_lab

# Debian's python3 carries LAVA's modules; the checkers also run under whatever python3 is
# first on PATH, which needs PyYAML and Jinja2.
python3 -c 'import yaml, jinja2' 2>/dev/null || python3 -m pip install --quiet pyyaml jinja2

# cargo-deny (`cargo xtask test` runs `cargo deny check`), built from crates.io once.
if ! cargo deny --version >/dev/null 2>&1; then
    say "cargo install --locked cargo-deny"
    if ! cargo install --locked --quiet cargo-deny; then
        say "cargo install cargo-deny failed (above)"
        exit 1
    fi
fi
if ! cargo deny --version >/dev/null 2>&1; then
    say "cargo deny is still missing after cargo install"
    exit 1
fi

# The U-Boot board rig (`cargo xtask test-board u-boot`, docs/board-u-boot.md): the arm64
# emulator from bookworm-backports (like x86 QEMU: install-qemu.sh's mirror logic), Debian's
# U-Boot for it (u-boot-qemu), mkimage (u-boot-tools), tftpd-hpa, ser2net and telnet (the
# board's console and LAVA's connection command), nfs-ganesha with its VFS backend and
# rpcbind (NFS roots, served in user space), and arm64 among dpkg's architectures (the rig
# downloads arm64 kernel and busybox packages with apt-get download; it installs none).
install_board_rig() {
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot install the board rig's tools (the board tests will skip)"
        return 0
    fi
    QEMU_PACKAGES=qemu-system-arm QEMU_BINARY=qemu-system-aarch64 \
        bash "$(dirname "$0")/install-qemu.sh"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        say "dpkg --add-architecture arm64 (package lists only)"
        dpkg --add-architecture arm64
        if ! out=$($APT update -q 2>&1); then
            echo "$out" >&2
            say "apt-get update failed (above)"
            exit 1
        fi
    fi
    local packages=(u-boot-qemu u-boot-tools tftpd-hpa ser2net telnet nfs-ganesha
        nfs-ganesha-vfs rpcbind)
    local missing
    read -ra missing <<< "$(missing_packages "${packages[@]}")"
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt-get install ${missing[*]}"
    if ! out=$($APT install -y -q --no-install-recommends "${missing[@]}" 2>&1); then
        echo "$out" >&2
        say "apt-get install of the board rig's tools failed (above)"
        exit 1
    fi
    # The packages' own services would hold ports 69 and 2049 (and ser2net's defaults): the
    # rig runs its own tftpd, ser2net and ganesha as children of its supervisor (a running
    # rpcbind is used as it is).
    if [ -d /run/systemd/system ]; then
        systemctl disable --now tftpd-hpa.service ser2net.service nfs-ganesha.service \
            >/dev/null 2>&1 || true
    else
        local service
        for service in tftpd-hpa nfs-ganesha; do
            [ -x "/etc/init.d/$service" ] && "/etc/init.d/$service" stop >/dev/null 2>&1
        done
        true
    fi
}
install_board_rig

# The board rig's USB stick (docs/board-u-boot.md, "Removable media"): the stick's disk image
# is built with sfdisk (fdisk) and mke2fs -d (e2fsprogs), and the rig serves the dispatcher's
# tmp directory to the board with Debian's python3 (http.server), as a lab's Apache does.
install_media_rig() {
    local packages=(fdisk e2fsprogs python3)
    local missing
    read -ra missing <<< "$(missing_packages "${packages[@]}")"
    apt_install_for "the board's USB stick tests" "${missing[@]}" || true
}
install_media_rig

# The TFTP / U-Boot runtime (lava-actions' tftp deploy and u-boot boot, tested on the fake
# board of fixtures/uboot-fake): tftpd-hpa (`in.tftpd`, which LAVA's tftp deploy checks
# for), u-boot-tools (`mkimage`: uImage kernels and U-Boot ramdisk headers), cpio and
# bash (the fake board unpacks its ramdisk with them).
install_uboot_runtime() {
    local tools=(in.tftpd mkimage cpio bash)
    local missing=()
    local tool
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot install ${missing[*]} (the U-Boot runtime tests will skip)"
        return 0
    fi
    say "apt-get install tftpd-hpa u-boot-tools cpio bash"
    if ! out=$($APT install -y -q --no-install-recommends tftpd-hpa u-boot-tools cpio bash 2>&1); then
        echo "$out" >&2
        say "apt-get install of the U-Boot runtime tools failed (above)"
        exit 1
    fi
}
install_uboot_runtime

# The x86 PC board rig (`cargo xtask test-board ipxe|grub`, docs/board-pc.md): Debian's iPXE
# ROMs for QEMU (ipxe-qemu: the virtio card's efi-virtio.rom, the PC's network boot firmware),
# GRUB 2's BIOS modules and grub-mknetdir (grub-pc-bin: GRUB's PXE image; files only, nothing
# is installed to a disk), and like the U-Boot board tftpd-hpa, ser2net and telnet (the
# rig's own TFTP server and console). qemu-system-x86 and SeaBIOS come from install-qemu.sh.
install_pc_board_rig() {
    local packages=(ipxe-qemu grub-pc-bin tftpd-hpa ser2net telnet)
    local missing
    read -ra missing <<< "$(missing_packages "${packages[@]}")"
    apt_install_for "the PC board tests" "${missing[@]}" || true
}
install_pc_board_rig

# The NBD root (deploy to: nbd, docs/nbd.md): Debian's nbd-server, which the job's
# xnbd-server-deploy starts (LAVA's xnbd-server is not in bookworm), and readelf (binutils),
# with which the board rig finds the libraries of its arm64 nbd-client. The rig's root image
# is written by mke2fs (install_qemu_overlay_tools installs e2fsprogs).
install_nbd_rig() {
    local missing=()
    command -v nbd-server >/dev/null 2>&1 || [ -x /usr/bin/nbd-server ] || missing+=(nbd-server)
    command -v readelf >/dev/null 2>&1 || missing+=(binutils)
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_install_for "the NBD tests" "${missing[@]}" || return 0
    if ! command -v nbd-server >/dev/null 2>&1 || ! command -v readelf >/dev/null 2>&1; then
        say "nbd-server or readelf is still missing after apt-get install"
        exit 1
    fi
}
install_nbd_rig
# append-overlays on sparse ext4 images (docs/qemu-overlays.md): simg2img and img2simg from
# android-sdk-libsparse-utils (bookworm main), for lava-actions' runtime_image_overlay tests.
install_sparse_image_tools() {
    [ -x /usr/bin/simg2img ] && [ -x /usr/bin/img2simg ] && return 0
    apt_install_for "the sparse image test" android-sdk-libsparse-utils || true
}
install_sparse_image_tools

# The UEFI rig (docs/board-uefi.md, `cargo xtask test-board grub-efi`): Debian's OVMF
# (the x86_64 EDK2 firmware QEMU boots from pflash), grub-efi-amd64-bin (the x86_64-efi
# modules the rig's network GRUB is built from) with grub-common (`grub-mkimage`), mtools
# (`mformat`: the FAT disk the UEFI shell fetches the kernel onto) and telnet (the
# console). Bookworm's own packages; QEMU comes from install-qemu.sh.
install_uefi_rig() {
    local files=(/usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd
        /usr/lib/grub/x86_64-efi/efinet.mod /usr/bin/grub-mkimage /usr/bin/mformat /usr/bin/telnet)
    local missing=() file
    for file in "${files[@]}"; do
        [ -e "$file" ] || missing+=("$file")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        if [ "${CI:-}" = true ]; then
            say "CI=true but not root: cannot install the UEFI rig (${missing[*]})"
            exit 1
        fi
        say "not root: cannot install ${missing[*]} (the grub-efi rig test will skip)"
        return 0
    fi
    say "apt-get install ovmf grub-efi-amd64-bin grub-common mtools telnet"
    if ! out=$($APT install -y -q --no-install-recommends ovmf grub-efi-amd64-bin grub-common mtools telnet 2>&1); then
        echo "$out" >&2
        say "apt-get install of the UEFI rig failed (above)"
        exit 1
    fi
    for file in "${files[@]}"; do
        [ -e "$file" ] || { say "$file is still missing after apt-get install"; exit 1; }
    done
}
install_uefi_rig

# The installer ISO rig (cargo xtask iso-installer, bins/lava-dispatch/tests/e2e_iso.rs,
# docs/qemu-iso.md): xorriso (the ISO is made with it and lava-run's pull-installer-files
# copies the kernel and initrd out of it), syslinux and syslinux-common (the installed disk's
# bootloader and MBR), mtools and dosfstools (its FAT boot partition, written without a loop
# mount). In CI a failed install is a failure.
install_iso_rig() {
    local missing=()
    command -v xorriso >/dev/null 2>&1 || missing+=(xorriso)
    command -v syslinux >/dev/null 2>&1 || missing+=(syslinux)
    [ -f /usr/lib/syslinux/mbr/mbr.bin ] || missing+=(syslinux-common)
    command -v mcopy >/dev/null 2>&1 || missing+=(mtools)
    command -v mkfs.fat >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.fat ] || [ -x /sbin/mkfs.fat ] ||
        missing+=(dosfstools)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot install ${missing[*]} (the installer ISO tests will skip)"
        return 0
    fi
    say "apt-get install ${missing[*]}"
    if ! out=$($APT install -y -q --no-install-recommends "${missing[@]}" 2>&1); then
        echo "$out" >&2
        say "apt-get install of the installer ISO tools failed (above)"
        exit 1
    fi
}
install_iso_rig
