"""CFFI builder (out-of-line API mode) for odradek._native.

setup.py registers `daemon/c_ext/_build.py:ffibuilder`; the module is named after the
product, not this folder, so the client imports it without importing the daemon. The
C declarations are read from odradek.h itself, so the header is the one source of truth.
"""
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _cdef_from_header(path):
    """odradek.h minus comments and preprocessor lines (which cdef does not accept),
    with each #define of an integer constant turned into a cdef constant."""
    text = open(path).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        m = re.match(r"#define\s+(ODK_\w+)\s+(\d+)", line)
        if m:
            out.append(f"#define {m.group(1)} {m.group(2)}")
        elif not line.lstrip().startswith("#"):
            out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header(os.path.join(HERE, "odradek.h")))
ffibuilder.set_source(
    "odradek._native",
    '#include "odradek.h"',
    sources=[os.path.relpath(os.path.join(HERE, name))
             for name in ("odradek.c", "crc32c.c", "record_decode.c", "shm.c", "kafka_request.c")],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
