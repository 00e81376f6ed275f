#!/usr/bin/env bash
# Installs what weft's tests and demo need on Debian 12, as root. Safe to re-run.
# Package scripts are prevented from starting services (etcd, dockerd) in the
# root network namespace: weft's tests start their own, inside namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(etcd-server etcd-client iproute2 iptables iputils-ping procps openssl iperf3 "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "weft needs Node.js >= 20.19 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
