#!/usr/bin/env bash
# The main job, from a fresh clone, as root: install vswitch (builds the C
# fast path), then run vswitchd in the foreground with the demo topology:
# bridge vsdemo0 with two namespaced hosts, vsdemo-a (10.199.0.1) and
# vsdemo-b (10.199.0.2), that ping each other through it.  Ctrl-C (or
# SIGTERM) stops the daemon and removes the demo again.
#   In another terminal:  ip netns exec vsdemo-a ping 10.199.0.2
#                         vswitchctl show; vswitchctl dump-flows vsdemo0
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in iproute2 iputils-ping; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q -e .
exec vswitchd --demo "$@"
