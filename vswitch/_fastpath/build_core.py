"""cffi build script for the C fast path (API mode).

The cdef is made from fastpath.h itself, so the header stays the one place
the C/Python contract is written down: the preprocessor strips comments and
expands constant expressions, and the integer #defines are handed to cffi as
`#define NAME ...` so the compiler supplies their values.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# Headers that make up the cffi interface (core.h and others are internal).
PUBLIC_HEADERS = [h for h in ("fastpath.h", "datapath.h") if (HERE / h).exists()]
INCLUDES = "".join(f'#include "{h}"\n' for h in PUBLIC_HEADERS)
SOURCES = sorted(str(p.relative_to(HERE.parent.parent)) for p in HERE.glob("*.c"))


def _cdef_from_header() -> str:
    text = "".join((HERE / h).read_text() for h in PUBLIC_HEADERS)
    defines = re.findall(r"^#define\s+(VS_[A-Z0-9_]+)\s+\S", text, re.M)
    cc = sysconfig.get_config_var("CC") or "cc"
    body = subprocess.run(
        cc.split() + ["-E", "-P", "-xc", "-", "-DVS_CFFI_CDEF"],
        input=INCLUDES, cwd=HERE, text=True, capture_output=True,
        check=True,
    ).stdout
    # Drop the standard headers' declarations: cffi knows the int types.
    start = body.index("enum vs_field_id")
    body = body[start:]
    consts = "\n".join(f"#define {d} ..." for d in defines if not d.endswith("_H"))
    return consts + "\n" + body


def _flags() -> tuple[list[str], list[str]]:
    cflags = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-fno-strict-aliasing", "-pthread"]
    ldflags = ["-pthread"]
    if os.environ.get("VSWITCH_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-g", "-O1"]
        cflags += san
        ldflags += san
    else:
        cflags += ["-march=x86-64-v2"] if os.uname().machine == "x86_64" else []
    return cflags, ldflags


def _afxdp() -> tuple[list[str], list[str]]:
    """AF_XDP ports (dp_port_afxdp.c) are optional: built with -DVS_HAVE_AFXDP
    and linked with libxdp + libbpf when a test program using them compiles
    and links (Debian: libxdp-dev, libbpf-dev).  VSWITCH_AFXDP=0 builds
    without them, VSWITCH_AFXDP=1 makes their absence an error."""
    want = os.environ.get("VSWITCH_AFXDP", "")
    if want == "0":
        return [], []
    cflags, libs = [], ["-lxdp", "-lbpf"]
    try:
        pc = subprocess.run(["pkg-config", "--cflags", "--libs", "libxdp", "libbpf"],
                            text=True, capture_output=True)
        if pc.returncode == 0:
            flags = pc.stdout.split()
            cflags = [f for f in flags if not f.startswith(("-l", "-L"))]
            libs = [f for f in flags if f.startswith(("-l", "-L"))]
    except OSError:
        pass                                # no pkg-config: try the plain names
    probe = ("#include <xdp/xsk.h>\n#include <xdp/libxdp.h>\n#include <bpf/libbpf.h>\n"
             "int main(void) { libbpf_set_print(0); libxdp_set_print(0);"
             " return xsk_umem__delete(0); }\n")
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(cc + ["-xc", "-", "-o", os.path.join(d, "probe")] + cflags + libs,
                           input=probe, text=True, capture_output=True)
    if r.returncode != 0:
        if want == "1":
            raise RuntimeError("VSWITCH_AFXDP=1 but libxdp/libbpf are not usable "
                               "(install libxdp-dev and libbpf-dev):\n" + r.stderr)
        print("vswitch: libxdp/libbpf not found: building without AF_XDP ports "
              "(install libxdp-dev and libbpf-dev and rebuild)", file=sys.stderr)
        return [], []
    return ["-DVS_HAVE_AFXDP"] + cflags, libs


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header())
_cflags, _ldflags = _flags()
_xdp_cflags, _xdp_libs = _afxdp()
_cflags += _xdp_cflags
_ldflags += _xdp_libs
ffibuilder.set_source(
    "vswitch._fastpath._core",
    INCLUDES,
    sources=SOURCES,
    include_dirs=[str(HERE)],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
