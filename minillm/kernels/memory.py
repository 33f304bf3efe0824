"""Allocator setting for training loops (glibc's malloc, mallopt(3)).

glibc serves every block above its mmap threshold (128 KB at start, rising with freed blocks to at
most 32 MB) from freshly mapped pages and unmaps it again on free. A training step allocates the
same large temporaries every step (the (N, V) logits alone are 64 MB for 2048 tokens over a
vocabulary of 8192), so each step page-faults them in again and the kernel zeroes every page:
measured on the 6-layer benchmark model (examples/bench_train.py), 67,000 page faults per step,
about 0.1-0.2 s of CPU time in a 1.9 s step. With the thresholds raised, freed blocks stay in the
heap and the next step reuses them: no faults after the first step.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # glibc's <malloc.h> parameter numbers


def keep_freed_memory(max_bytes=1 << 30):
    """Allocations up to max_bytes come from the heap, and up to max_bytes of freed memory at its
    top stays mapped, for the rest of the process. Returns True when applied; False where the C
    library has no mallopt (not glibc), which changes nothing but speed."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or not 0 < max_bytes < 2**31:
        raise ValueError(f"max_bytes: expected an int in (0, 2^31), got {max_bytes!r}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, max_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, max_bytes))
