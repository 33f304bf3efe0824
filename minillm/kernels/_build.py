"""cffi build script: compiles every csrc/*.c into the extension module minillm._native.

Each kernel family has a header csrc/<family>.h holding only plain C declarations; their
concatenation is the cdef, so adding a family means adding a .c and a .h, nothing else.
cffi compiles in a temporary folder, hence the absolute paths computed from __file__.
"""
import glob
import os
import re

from cffi import FFI

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CSRC = os.path.join(ROOT, "csrc")


def _declarations(header_text):
    """The cdef-able part of a header: drop preprocessor lines and comments."""
    text = re.sub(r"/\*.*?\*/", "", header_text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


headers = sorted(glob.glob(os.path.join(CSRC, "*.h")))
sources = sorted(glob.glob(os.path.join(CSRC, "*.c")))

ffibuilder = FFI()
ffibuilder.cdef("\n".join(_declarations(open(h).read()) for h in headers))
ffibuilder.set_source(
    "minillm._native",
    "\n".join(f'#include "{os.path.basename(h)}"' for h in headers),
    sources=sources,
    include_dirs=[CSRC],
    extra_compile_args=["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-std=c11"],
    extra_link_args=["-fopenmp", "-lm"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
