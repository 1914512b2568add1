#!/usr/bin/env bash
# Everything the tests need, then every test: from a fresh clone, as root.
#   lint -> unit/property tests -> sanitizer (ASan+UBSan) run -> fuzz smoke
#   -> benchmark smoke.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(clang-14 libfuzzer-14-dev libclang-rt-14-dev libxdp-dev libbpf-dev
          openvswitch-common iproute2 iputils-ping tshark
          fuse3 libfuse3-3                 # SR-IOV tests: FUSE-mounted fake sysfs
          openvswitch-switch)      # Open vSwitch 3.1: vxlan and OpenFlow interop peer, benches
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q -r requirements-test.txt
python3 -m pip install -q -e .

echo "== ruff"
ruff check .
echo "== pytest"
python3 -m pytest -q "$@"
if [[ -x tools/sanitize.sh ]]; then
    echo "== pytest under AddressSanitizer + UndefinedBehaviorSanitizer"
    tools/sanitize.sh
fi
if [[ -x tools/fuzz/run.sh ]]; then
    echo "== fuzz smoke"
    tools/fuzz/build.sh
    tools/fuzz/out/fuzz_pipeline tools/fuzz/crashes/fuzz_pipeline-*   # past findings
    tools/fuzz/run.sh fuzz_parse 60
    tools/fuzz/run.sh fuzz_pipeline 60
fi
echo "== benchmark smoke"
python3 -m benches.bench_fastpath --quick
python3 -m benches.bench_openflow --quick
