#!/usr/bin/env bash
# The test command: installs prerequisites, builds weft and runs every test
# (unit tests, real etcd, real kernel devices in network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh docker.io busybox-static containerd runc containernetworking-plugins prometheus nftables
npm test
