#!/usr/bin/env bash
# Build the libFuzzer targets against the C fast path.
#
#   tools/fuzz/build.sh [TARGET...]      (default: every tools/fuzz/fuzz_*.c)
#
# Binaries land in tools/fuzz/out/ (git-ignored).  Environment:
#   CC            compiler (default clang-14; needs libFuzzer)
#   FUZZ_CFLAGS   extra flags appended to the compile line
#   FUZZ_CORE_DIR the core's sources (default vswitch/_fastpath; e.g. a
#                 `git archive` export of another commit, to bisect a crash)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
core=$(cd "${FUZZ_CORE_DIR:-$root/vswitch/_fastpath}" && pwd)
out="$here/out"
cc=${CC:-clang-14}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "build.sh: compiler '$cc' not found (set CC)" >&2
    exit 2
fi

# The core's C sources; _core.c is cffi's generated wrapper (build output).
sources=()
for f in "$core"/*.c; do
    [ "$(basename "$f")" = "_core.c" ] && continue
    sources+=("$f")
done

if [ $# -eq 0 ]; then
    set --
    for f in "$here"/fuzz_*.c; do
        set -- "$@" "$(basename "$f" .c)"
    done
fi

cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -fno-omit-frame-pointer -std=gnu11 -pthread
        -Wall -Wextra -Wno-unused-parameter -fno-strict-aliasing
        -I "$core")
# shellcheck disable=SC2206  # word splitting of FUZZ_CFLAGS is intended
extra=(${FUZZ_CFLAGS:-})

mkdir -p "$out"
for target in "$@"; do
    target=${target%.c}
    src="$here/$target.c"
    if [ ! -f "$src" ]; then
        echo "build.sh: no such target: $src" >&2
        exit 2
    fi
    echo "build.sh: $target"
    "$cc" "${cflags[@]}" "${extra[@]}" -o "$out/$target" "$src" "${sources[@]}" -lpthread
done
