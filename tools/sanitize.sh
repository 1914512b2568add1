#!/usr/bin/env bash
# Run pytest against the C fast path built with AddressSanitizer and UBSan.
#
#   tools/sanitize.sh [pytest arguments...]
#
# Default arguments: every tests/test_*.py that loads the C core (the parser
# and pipeline tests among them), plus -q.  The extension is built with
# VSWITCH_SANITIZE=1 (see vswitch/_fastpath/build_core.py) into a temporary
# copy of the vswitch package, and PYTHONPATH points there: the in-tree
# vswitch/_fastpath/_core*.so is neither used nor touched.
#
# Python itself is not instrumented, so the ASan runtime is preloaded
# (LD_PRELOAD) and leak detection is off (the interpreter's own allocations
# would all be reported).  Any ASan or UBSan report aborts the test run.
#
# Environment:
#   SANITIZE_KEEP=1   keep the temporary build (its path is printed)
#   PYTHON            interpreter (default python3)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
cd "$root"

# The runtime must be the one the compiler that builds the extension links
# against: cffi compiles with the interpreter's CC (normally gcc).
cc=$("$python" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')
asan_rt=$("$cc" -print-file-name=libasan.so)
if [ ! -e "$asan_rt" ]; then
    echo "sanitize.sh: $cc has no libasan.so ($asan_rt)" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vswitch-sanitize.XXXXXX")
cleanup() {
    if [ "${SANITIZE_KEEP:-0}" = 1 ]; then
        echo "sanitize.sh: build kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# A copy of the package without any built extension or bytecode.
mkdir -p "$tmp/pkg"
tar -C "$root" --exclude='*.so' --exclude='__pycache__' --exclude='_core.c' \
    --exclude='*.o' -cf - vswitch | tar -C "$tmp/pkg" -xf -

echo "sanitize.sh: building the sanitized extension in $tmp/pkg" >&2
(cd "$tmp/pkg" && VSWITCH_SANITIZE=1 "$python" vswitch/_fastpath/build_core.py \
    > "$tmp/build.log" 2>&1) || {
    cat "$tmp/build.log" >&2
    echo "sanitize.sh: build failed" >&2
    exit 1
}
so=$(find "$tmp/pkg/vswitch/_fastpath" -maxdepth 1 -name '_core*.so' | head -n 1)
if [ -z "$so" ]; then
    echo "sanitize.sh: no extension was built" >&2
    exit 1
fi
# (grep without -q reads all of nm's output: no SIGPIPE under pipefail)
if ! nm -D "$so" | grep '__asan_init' >/dev/null; then
    echo "sanitize.sh: $so is not instrumented" >&2
    exit 1
fi

export PYTHONPATH="$tmp/pkg${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$asan_rt${LD_PRELOAD:+ $LD_PRELOAD}"
# Reports go to files as well as stderr: pytest captures stderr and an
# abort loses what it captured, so the logs are printed at the end.
mkdir -p "$tmp/logs"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$tmp/logs/asan:log_exe_name=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$tmp/logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Python objects in malloc'd blocks, so that ASan sees overruns of the
# frames and buffers the tests pass in.
export PYTHONMALLOC=malloc
# The interpreter must load the sanitized copy, not the source tree: -P
# keeps the current directory off sys.path.
loaded=$("$python" -P -c 'import vswitch._fastpath._core as c; print(c.__file__)')
case "$loaded" in
    "$tmp"/*) echo "sanitize.sh: using $loaded" >&2 ;;
    *) echo "sanitize.sh: imported $loaded instead of the sanitized build" >&2; exit 1 ;;
esac

if [ $# -eq 0 ]; then
    # Every test module that loads the C core.
    mapfile -t tests < <(grep -l -E 'vswitch\._fastpath|vswitch\.flowtable|from vswitch import .*flowtable|vswitch\.datapath' \
        tests/test_*.py 2>/dev/null | sort)
    if [ ${#tests[@]} -eq 0 ]; then
        echo "sanitize.sh: no core tests found under tests/" >&2
        exit 2
    fi
    set -- -q -p no:cacheprovider "${tests[@]}"
fi

# pyproject.toml may put the repository root first on sys.path (pytest's
# `pythonpath` ini option), which would load the in-tree vswitch: list the
# sanitized copy before it, and let a plugin check at session start that
# the core really comes from the copy.
cat > "$tmp/pkg/_sanitize_check.py" <<EOF
import pytest


def pytest_sessionstart(session):
    import vswitch._fastpath._core as core
    if not core.__file__.startswith("$tmp/"):
        pytest.exit("sanitize.sh: tests would use " + core.__file__ +
                    ", not the sanitized build", returncode=3)
EOF

echo "sanitize.sh: pytest $*" >&2
rc=0
"$python" -P -m pytest -p _sanitize_check -o "pythonpath=$tmp/pkg ." "$@" || rc=$?

logs=$(find "$tmp/logs" -type f | sort)
if [ -n "$logs" ]; then
    for f in $logs; do
        echo "===== sanitize.sh: $(basename "$f") =====" >&2
        cat "$f" >&2
    done
    echo "sanitize.sh: sanitizer reports above" >&2
    [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
