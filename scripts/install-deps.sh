#!/usr/bin/env bash
# Installs what weft's tests and demo need on Debian 12, as root. Safe to re-run.
# Package scripts are prevented from starting services (etcd, dockerd,
# containerd) in the root network namespace: weft's tests start their own,
# inside namespaces. The machine's package configuration is left as it was
# found: the policy file that holds services back is removed again if this
# script put it there, whether it ends well, fails or is interrupted (Ctrl-C,
# SIGTERM); a policy file that was there before is the machine's own and is
# left alone; the services of the packages it installs stay disabled at boot.
# One line per step; apt's and npm's own output goes to a log file, which is
# named (and kept) when a step fails and removed when all went well.
set -euo pipefail
cd "$(dirname "$0")/.."

# g++, make and python3: node-gyp builds raw-socket's addon (ICMP peer probes) during npm ci.
# gcc and libc6-dev (cc and the kernel's headers): npm run build compiles the kernel listener (kernel/netlink/listener.c).
packages=(etcd-server etcd-client iproute2 iptables iputils-ping procps openssl iperf3 g++ make python3 gcc libc6-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

log=$(mktemp -t weft-install.XXXXXX.log)
# Overridable for scripts/install-deps.sh's own test only.
policy=${WEFT_POLICY_RC_D:-/usr/sbin/policy-rc.d}
placed_policy=0
# done: all went well; failed: a step's failure was reported (naming the log); in_step: a step's line is open.
state=running
in_step=0
finish() {
  if [ "$placed_policy" = 1 ]; then rm -f "$policy"; fi
  if [ "$in_step" = 1 ]; then echo interrupted; fi
  case $state in
    done) rm -f "$log" ;;
    failed) ;;
    *) echo "install-deps: stopped before the end; the output of its steps is in $log" >&2 ;;
  esac
}
trap finish EXIT
# A signal ends the script through its EXIT trap (bash would otherwise die of SIGTERM without running it).
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

step() {
  local what=$1
  shift
  printf '%s ... ' "$what"
  printf '\n==> %s: %s\n' "$what" "$*" >>"$log"
  in_step=1
  local rc=0
  "$@" >>"$log" 2>&1 || rc=$?
  in_step=0
  if [ "$rc" = 0 ]; then
    echo ok
  else
    echo "failed (exit $rc); its output is in $log, which ends:"
    tail -n 20 "$log" | sed 's/^/  /' >&2
    state=failed
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
  # Installing enables the new packages' services for the next boot. The machine did not run them before (they
  # were not installed), so it is not to run them after a reboot either: their units are disabled again.
  units=()
  for p in "${missing[@]}"; do
    while IFS= read -r unit; do units+=("${unit##*/}"); done < <(dpkg -L "$p" 2>/dev/null | grep -E '^(/usr)?/lib/systemd/system/[^/@]+\.(service|socket|timer)$' || true)
  done
  if [ "${#units[@]}" -gt 0 ] && command -v systemctl >/dev/null; then
    # Not a failure of the install when this system's systemctl cannot: the line says so.
    printf 'disabling %s at boot, as before ... ' "${units[*]}"
    printf '\n==> disabling at boot: systemctl disable --no-reload %s\n' "${units[*]}" >>"$log"
    if systemctl disable --no-reload "${units[@]}" >>"$log" 2>&1; then echo ok; else echo 'not possible here: they stay enabled'; fi
  fi
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "weft needs Node.js >= 20.19 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
# node-gyp builds raw-socket against the running Node's headers; Debian's nodejs ships them under /usr, so
# nothing is downloaded (npm would otherwise fetch them from the Node.js site, which CI cannot reach).
nodedir=()
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$(dirname "$(dirname "$(command -v node)")")/include/node/node.h" ]; then
  nodedir=(--nodedir="$(dirname "$(dirname "$(command -v node)")")")
fi
step "npm ci" npm ci --no-audit --no-fund --loglevel=error "${nodedir[@]}"
state=done
