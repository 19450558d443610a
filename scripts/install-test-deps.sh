#!/usr/bin/env bash
# Install the tools the test suite drives for real: busybox and dash (helper scripts run
# under both), git (test definitions), GNU time (benchmarks), LAVA's own coordinator and
# dispatcher (interop and reference runs), OpenSSH's server and client (the SSH tests start
# their own sshd on a loopback port; no system sshd is used), QEMU (the embedded default
# device), Python with PyYAML and Jinja2 (LAVA's checkers and the reference renderer).
# Needs root; idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=600"

if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: not root, skipping apt installs (tests needing tools will skip)" >&2
else
    $APT update -qq
    $APT install -y -qq --no-install-recommends \
        busybox-static dash git time cpio lava-coordinator lava-dispatcher \
        openssh-server openssh-client >/dev/null
    bash "$(dirname "$0")/install-qemu.sh"
fi

python3 -c 'import yaml, jinja2' 2>/dev/null || python3 -m pip install --quiet pyyaml jinja2
