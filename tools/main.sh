#!/usr/bin/env bash
# The main job, from a fresh clone: install, build the C fast path, run it.
# Until the daemon lands (issue: datapath and daemon), the main job is the
# in-memory fast-path benchmark.  Pass --quick for a one-minute run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
python3 setup.py -q build_ext --inplace
exec python3 -m benches.bench_fastpath "$@"
