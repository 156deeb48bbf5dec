#!/usr/bin/env bash
# Installs the Debian packages the local cluster and the tests need, when missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(containerd runc containernetworking-plugins iptables iproute2 openssl curl conntrack redis-server prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || die "Go is required to build the cluster binaries (go 1.24 or newer)"
