#!/usr/bin/env bash
# Installs what weft's tests and demo need on Debian 12, as root. Safe to re-run.
# Package scripts are prevented from starting services (etcd, dockerd,
# containerd) in the root network namespace: weft's tests start their own,
# inside namespaces. The machine is left as it was otherwise: the policy file
# that holds services back is removed again if this script put it there.
set -euo pipefail
cd "$(dirname "$0")/.."

# g++, make and python3: node-gyp builds raw-socket's addon (ICMP peer probes) during npm ci.
packages=(etcd-server etcd-client iproute2 iptables iputils-ping procps openssl iperf3 g++ make python3 "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

log=$(mktemp /tmp/weft-install.XXXXXX)
policy=/usr/sbin/policy-rc.d
placed_policy=0
finish() {
  [ "$placed_policy" = 1 ] && rm -f "$policy"
  rm -f "$log"
}
trap finish EXIT
# One line per step; apt's and npm's own output goes to the log, printed only when a step fails.
step() {
  local what=$1
  shift
  printf '%s ... ' "$what"
  if "$@" >"$log" 2>&1; then
    echo ok
  else
    local rc=$?
    echo "failed (exit $rc):"
    tail -n 40 "$log" >&2
    exit "$rc"
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    placed_policy=1
  fi
  step "apt-get update" apt-get update -q
  step "installing ${missing[*]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "weft needs Node.js >= 20.19 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
step "npm ci" npm ci --no-audit --no-fund --loglevel=error
