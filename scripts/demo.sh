#!/usr/bin/env bash
# The main job: installs what it needs (etcd, iproute2, iptables, Docker, busybox, the CNI plugins),
# builds weft, and runs a 3-host weft cluster with real Docker daemons in network
# namespaces, printing the ping matrices and leases. Pass --keep to leave it up
# until Ctrl-C, --hosts N for another size, --ip-masq to turn on masquerading,
# --dual-stack for an IPv4+IPv6 cluster that pings over both families.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh docker.io busybox-static containerd runc containernetworking-plugins
npm run build --silent
exec node dist/demo/demo.js "$@"
