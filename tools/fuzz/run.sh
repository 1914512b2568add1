#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time.
#
#   tools/fuzz/run.sh TARGET SECONDS [libFuzzer options...]
#   e.g. tools/fuzz/run.sh fuzz_parse 60
#        tools/fuzz/run.sh fuzz_pipeline 14400 -jobs=8 -workers=8
#
# Seeds: tools/fuzz/corpus/TARGET (committed, read only).  New inputs the
# fuzzer finds go to tools/fuzz/out/corpus/TARGET (git-ignored, kept between
# runs).  Crashing inputs land in tools/fuzz/crashes/TARGET-crash-<sha1>
# (also -leak-, -timeout-, -oom-).  Exits non-zero if the run found one.
# The target is built first if tools/fuzz/out/TARGET does not exist (run
# tools/fuzz/build.sh to rebuild after changing the sources).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer options...]" >&2
    exit 2
fi
target=${1%.c}
seconds=$2
shift 2

here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
bin="$out/$target"
seeds="$here/corpus/$target"
work="$out/corpus/$target"
crashes="$here/crashes"

if [ ! -x "$bin" ]; then
    "$here/build.sh" "$target"
fi
mkdir -p "$work" "$crashes" "$seeds"

: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
: "${ASAN_OPTIONS:=detect_leaks=1}"
export UBSAN_OPTIONS ASAN_OPTIONS

count_artifacts() {
    find "$crashes" -maxdepth 1 -type f -name "$target-*" | wc -l
}
before=$(count_artifacts)

# -jobs/-workers write fuzz-N.log into the working directory: keep it in out/.
cd "$out"
rc=0
"$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/$target-" "$@" "$work" "$seeds" || rc=$?

after=$(count_artifacts)
if [ "$after" -gt "$before" ]; then
    echo "run.sh: $target: $((after - before)) new crashing input(s) in $crashes:" >&2
    find "$crashes" -maxdepth 1 -type f -name "$target-*" -newer "$bin" -print >&2 || true
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "run.sh: $target: libFuzzer exited with status $rc" >&2
    exit "$rc"
fi
echo "run.sh: $target: no crash in ${seconds}s"
