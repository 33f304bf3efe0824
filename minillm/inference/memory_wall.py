"""The memory wall of batch-1 decoding: each new token multiplies one activation row by every weight
matrix of the model, so every weight byte is read from memory once per token and the arithmetic is
two flops per weight -- far below what the cores could do. The time per token is then bounded below
by (weight bytes read per token) / (memory read bandwidth), and

    ceiling tok/s = bandwidth / weight_bytes_per_token(model),    fraction = measured tok/s / ceiling,

the roofline bound (Williams, Waterman & Patterson 2009) at arithmetic intensity ~2 flop/weight.
Quantized formats lower the bytes per weight and so raise the ceiling by the same factor; the KV
cache adds 2 L Hkv D 4 bytes per cached token, small beside the weights for short contexts and left
out here. The decode benchmarks (examples/kv_cache_analysis.py, bench_real_model.py, bench_quant.py)
print both numbers, with the bandwidth measured in the same run by read_bandwidth()."""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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
    """Measured memory read bandwidth in bytes/s: np.max over an int32 array of nbytes (well past
    the last-level cache; one vector max per 16 or 8 values, so memory bound), split over 1 and
    over `threads` Python threads (numpy releases the GIL), median of `repeats` each, the higher
    of the two. threads: int >= 1 (the thread count the decode being compared runs with)."""
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {threads!r}")
    if not isinstance(nbytes, (int, np.integer)) or nbytes < (1 << 20):
        raise ValueError(f"nbytes: expected an int >= 1 MiB (1048576), got {nbytes!r}")
    a = np.ones(int(nbytes) // 4, dtype=np.int32)
    best = 0.0
    for n in sorted({1, int(threads)}):
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


def decode_ceiling(model_or_bytes, bandwidth):
    """Batch-1 decode tok/s the memory allows: bandwidth (bytes/s) / weight bytes per token.
    model_or_bytes: a Transformer, or the bytes per token as a number."""
    nbytes = model_or_bytes if isinstance(model_or_bytes, (int, float, np.integer, np.floating)) \
        else weight_bytes_per_token(model_or_bytes)
    if not nbytes > 0:
        raise ValueError(f"model_or_bytes: expected > 0 bytes per token, got {nbytes}")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth: expected > 0 bytes/s, got {bandwidth}")
    return float(bandwidth) / float(nbytes)
