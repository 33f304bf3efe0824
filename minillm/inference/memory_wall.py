"""The memory wall of batch-1 decoding: each new token multiplies one activation row by every weight
matrix of the model, so every weight byte is read from memory once per token and the arithmetic is
two flops per weight -- far below what the cores could do. The time per token is then bounded below
by (weight bytes read per token) / (memory read bandwidth), and

    ceiling tok/s = bandwidth / weight_bytes_per_token(model),    fraction = measured tok/s / ceiling,

the roofline bound (Williams, Waterman & Patterson 2009) at arithmetic intensity ~2 flop/weight.
The bandwidth is the one the decode's working set gets: working_set_bandwidth() reads a buffer of
the weight bytes per token, again and again as a decode does, so where the weights fit in the
last-level cache the ceiling is that cache's bandwidth. (On a Xeon whose L3 reports 480 MiB, a warm
68 MB buffer read at 54 GB/s and a 256 MiB one at 31 GB/s: against the fixed 256 MiB probe a
4-bit 134M model decoded at 106% of its "ceiling".)
Quantized formats lower the bytes per weight and so raise the ceiling by the same factor; the KV
cache adds 2 L Hkv D 4 bytes per cached token, small beside the weights for short contexts and left
out here. The decode benchmarks (examples/kv_cache_analysis.py, bench_real_model.py, bench_quant.py)
print both numbers, with the bandwidth measured in the same run by working_set_bandwidth(), through
read_bandwidth(): a native streaming read (csrc/qgemm.c memory_read: 64-byte vector loads, all
threads; 256 MiB unless told) whose best repeat is what the hardware delivers to a kernel that does
nothing else, so a decode kernel's fraction of it stays <= 1 (numpy's int32 max, the fallback, reads
at ~2/3 of it)."""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..kernels.native import ffi, lib   # lib None: the extension is not built

EMBEDDINGS = ("wte", "wpe", "embed_tokens")  # tables of which a token reads one row, not all of them


def _nbytes(a):
    """Bytes of a float array or a quantized layer (blocks, scales and zeros: its .nbytes)."""
    return int(a.nbytes)


def weight_bytes_per_token(model):
    """Bytes of parameters one batch-1 decode step reads: every matrix, bias and norm vector, whole;
    of an embedding table only its row (a token embedding tied to the output head is read whole,
    as the head). model: a Transformer; quantized layers count their own bytes (model.quantized)."""
    if not hasattr(model, "params") or not hasattr(model, "config"):
        raise TypeError(f"model: expected a Transformer, got {type(model).__name__}")
    tied = bool(model.config.tie_embeddings)
    weights = {**model.params, **getattr(model, "quantized", {})}  # a quantized layer wins
    total = 0
    for name, a in weights.items():
        parent = name.split(".")[-2] if "." in name else ""           # "wte" in "transformer.wte.weight"
        if parent in EMBEDDINGS and not (tied and parent != "wpe"):
            total += _nbytes(a) // a.shape[0]                         # one row
        else:
            total += _nbytes(a)
    return total


def read_bandwidth(threads=2, nbytes=256 << 20, repeats=7):
    """Measured memory read bandwidth in bytes/s: a read of nbytes (well past the last-level cache)
    by `threads` threads in one OpenMP region with 64-byte vector loads (csrc/qgemm.c memory_read),
    the best of `repeats`: the ceiling a memory-bound kernel can reach. Without the C extension,
    np.max over an int32 array split over `threads` Python threads (median of repeats), which reads
    slower (one compare per element). threads: int >= 1 (what the decode being compared runs with)."""
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {threads!r}")
    if not isinstance(nbytes, (int, np.integer)) or nbytes < (1 << 20):
        raise ValueError(f"nbytes: expected an int >= 1 MiB (1048576), got {nbytes!r}")
    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats: expected an int >= 1, got {repeats!r}")
    if lib is not None and hasattr(lib, "memory_read"):
        return _native_read_bandwidth(int(threads), int(nbytes) // 64 * 64, int(repeats))
    return _numpy_read_bandwidth(int(threads), int(nbytes), int(repeats))


def _native_read_bandwidth(threads, nbytes, repeats):
    raw = np.ones(nbytes + 64, dtype=np.uint8)                      # written: every page is mapped
    start = (-raw.ctypes.data) % 64
    buf = raw[start:start + nbytes]                                  # 64-byte aligned (aligned loads)
    ptr = ffi.from_buffer("uint8_t[]", buf)
    lib.memory_read(ptr, nbytes, threads)                            # thread start, TLB
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        total = lib.memory_read(ptr, nbytes, threads)
        best = max(best, nbytes / (time.perf_counter() - t0))
    want = nbytes // 8 * 0x0101010101010101 % (1 << 64)              # every byte 1: the u64 words' sum, wrapped
    if total % (1 << 64) != want:
        raise RuntimeError(f"memory_read: checksum {total} differs from the buffer's")
    return best


def _numpy_read_bandwidth(threads, nbytes, repeats):
    a = np.ones(nbytes // 4, dtype=np.int32)
    best = 0.0
    for n in sorted({1, threads}):
        parts = np.array_split(a, n)
        with ThreadPoolExecutor(n) as pool:
            def run():
                list(pool.map(np.max, parts))
            run()                                                      # page faults, thread start
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
        best = max(best, a.nbytes / float(np.median(times)))
    return best


def _bytes_per_token(model_or_bytes):
    """model_or_bytes: a Transformer (its weight_bytes_per_token) or the bytes as a number, > 0."""
    nbytes = model_or_bytes if isinstance(model_or_bytes, (int, float, np.integer, np.floating)) \
        else weight_bytes_per_token(model_or_bytes)
    if not nbytes > 0:
        raise ValueError(f"model_or_bytes: expected > 0 bytes per token, got {nbytes}")
    return nbytes


def working_set_bandwidth(model_or_bytes, threads=2, repeats=7):
    """read_bandwidth over a buffer of the bytes a decode step reads (a Transformer's
    weight_bytes_per_token, or a number; at least 1 MiB), warm: the first read is untimed and the best
    of `repeats` counts, as a decode re-reads its weights every token. Where they fit in the last-
    level cache this is the cache's bandwidth, which a fixed, larger probe would understate."""
    nbytes = _bytes_per_token(model_or_bytes)
    return read_bandwidth(threads, nbytes=max(int(nbytes) // 64 * 64, 1 << 20), repeats=repeats)


def decode_ceiling(model_or_bytes, bandwidth):
    """Batch-1 decode tok/s the memory allows: bandwidth (bytes/s) / weight bytes per token.
    model_or_bytes: a Transformer, or the bytes per token as a number."""
    nbytes = _bytes_per_token(model_or_bytes)
    if not bandwidth > 0:
        raise ValueError(f"bandwidth: expected > 0 bytes/s, got {bandwidth}")
    return float(bandwidth) / float(nbytes)
