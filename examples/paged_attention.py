"""Paged KV cache and continuous batching: memory utilisation, throughput, the decode kernel.

    python examples/paged_attention.py                       # ~3 minutes on 2 cores
    python examples/paged_attention.py --preset gpt2-6l --batches 1,4,16,64

Table 1 -- memory: 200 requests with mixed prompt (16..400) and output (16..400) lengths run
    through the Engine (block size 16). At every step we count the KV slots that hold real tokens
    and the slots reserved: by the paged cache (its allocated blocks) and by contiguous max-length
    preallocation (every running request reserves max_seq_len = 1024 slots, as a static-batching
    server must). Utilisation = used / reserved, averaged over steps; waste = 1 - utilisation.
    (Memory accounting does not depend on model width, so a small model keeps this part fast.)
Table 2 -- throughput of the Engine at batch 1, 4, 16, 64 concurrent requests on the 124M GPT-2 shape
    (random weights, 32-token prompts, 32 new tokens each): generated tokens per second.
Table 3 -- the decode-attention kernel through block tables: C (csrc/paged_attention.c) vs the
    NumPy reference that gathers the pages first, at several batch sizes and context lengths.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
# OpenBLAS's pthreads and the C kernels' OpenMP threads take turns every layer; spinning OpenMP
# workers starve BLAS on 2 busy cores (measured 6.7 -> 31 tok/s decode on the 124M shape)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.inference import Engine  # noqa: E402
from minillm.inference._native import _HAVE_C, paged_attention_decode  # noqa: E402


def memory_table(n_requests, seed=0):
    cfg = ModelConfig.preset("llama-tiny", max_seq_len=1024)
    model = Transformer(cfg, seed=0)
    rng = np.random.default_rng(seed)
    bs = 16
    engine = Engine(model, block_size=bs, num_blocks=800, max_num_seqs=32, max_num_batched_tokens=512)
    for _ in range(n_requests):
        p, n = int(rng.integers(16, 401)), int(rng.integers(16, 401))
        engine.add_request(rng.integers(0, cfg.vocab_size, size=p), n)
    used = paged = contiguous = 0
    steps = 0
    t0 = time.perf_counter()
    while engine.has_unfinished():
        engine.step()
        live = engine.cache.seqs.values()
        used += sum(s.num_computed for s in live)
        paged += engine.cache.allocator.num_used() * bs
        contiguous += len(engine.cache.seqs) * cfg.max_seq_len
        steps += 1
    dt = time.perf_counter() - t0
    print(f"\n== Table 1: KV memory utilisation, {n_requests} mixed-length requests "
          f"(prompt 16..400, output 16..400), {steps} engine steps, {dt:.0f} s")
    print(f"{'allocation':34s} {'utilisation':>11s} {'waste':>7s}")
    print(f"{'paged, block 16':34s} {used / paged:11.1%} {1 - used / paged:7.1%}")
    print(f"{'contiguous, max_seq_len 1024 each':34s} {used / contiguous:11.1%} {1 - used / contiguous:7.1%}")
    print(f"  engine: {engine.stats['preempted_recompute']} preemptions, peak batch {engine.stats['max_batch']}, "
          f"prefix hit rate {engine.prefix_hit_rate():.0%}")


def throughput_table(preset, batches, prompt_len=32, new=32):
    cfg = ModelConfig.preset(preset)
    model = Transformer(cfg, seed=0)
    rng = np.random.default_rng(0)
    print(f"\n== Table 2: Engine throughput, {preset} shape, prompt {prompt_len}, {new} new tokens per request")
    print(f"{'batch':>5s} {'requests':>8s} {'steps':>6s} {'gen tok/s':>10s} {'vs batch 1':>10s}")
    base = None
    for B in batches:
        engine = Engine(model, block_size=16, max_num_seqs=B, max_num_batched_tokens=max(256, B * prompt_len),
                        num_blocks=B * (-(-(prompt_len + new) // 16)) + 8)
        for _ in range(B):
            engine.add_request(rng.integers(0, cfg.vocab_size, size=prompt_len), new)
        t = time.perf_counter()
        engine.run()
        dt = time.perf_counter() - t
        rate = B * new / dt
        base = base or rate
        print(f"{B:5d} {B:8d} {engine.stats['steps']:6d} {rate:10.1f} {rate / base:9.1f}x")


def kernel_table(repeats=20):
    print(f"\n== Table 3: paged decode attention (12 heads, D 64, block 16), median of {repeats}")
    print(f"{'seqs':>4s} {'context':>7s} {'NumPy gather ms':>16s} {'C ms':>7s} {'speedup':>8s}")
    rng = np.random.default_rng(0)
    for B, S in [(1, 512), (16, 512), (64, 256), (8, 2048)]:
        bs, H, D = 16, 12, 64
        MB = S // bs
        NB = B * MB
        kp = rng.standard_normal((NB, H, bs, D), dtype=np.float32)
        vp = rng.standard_normal((NB, H, bs, D), dtype=np.float32)
        tables = rng.permutation(NB).reshape(B, MB).astype(np.int32)
        lengths = np.full(B, S, dtype=np.int32)
        q = rng.standard_normal((B, H, D), dtype=np.float32)

        def med(f):
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            return float(np.median(ts)) * 1e3
        ref = med(lambda: paged_attention_decode(q, kp, vp, tables, lengths, 0.125, use_native=False))
        c = med(lambda: paged_attention_decode(q, kp, vp, tables, lengths, 0.125)) if _HAVE_C else float("nan")
        print(f"{B:4d} {S:7d} {ref:16.2f} {c:7.3f} {ref / c:7.1f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--skip", default="", help="comma list of tables to skip: 1,2,3")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    if "1" not in skip:
        memory_table(args.requests)
    if "2" not in skip:
        throughput_table(args.preset, [int(b) for b in args.batches.split(",")])
    if "3" not in skip:
        kernel_table()


if __name__ == "__main__":
    main()
