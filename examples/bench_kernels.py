"""Benchmark the native C kernels against the NumPy references, numpy's BLAS and PyTorch.

    python examples/bench_kernels.py            # ~2 minutes on 2 cores
    python examples/bench_kernels.py attention  # one section: matmul, attention or fused
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python examples/bench_kernels.py   # single thread

Thread counts: OMP_NUM_THREADS (our OpenMP kernels) and OPENBLAS_NUM_THREADS (numpy's BLAS) default
to 2 here, set before numpy is imported (the pools read them once, at start-up); values already
in the environment win. PyTorch gets the same count via torch.set_num_threads.

Every time is the median of several repeats after a warm-up call (wall clock: on a machine shared
with other jobs, OpenMP kernels also wait for descheduled threads, so run it on an idle machine).
Before each measured block the script sleeps 0.2 s: OpenBLAS worker threads keep spinning for a
while after a call, and would steal a core from the next kernel measured. minillm shortens that
spin (OPENBLAS_THREAD_TIMEOUT=12, see minillm/__init__.py; set here too, before numpy loads), so
the pause only matters when that variable is set higher.

Sections: matmul on the shapes of the training-benchmark model (6 layers, d_model 384, 6 heads,
ctx 256, vocab 8192, batch 8 -> M = 2048) and of GPT-2 124M (d 768, ffn 3072, vocab 50257; M = 1
decode GEMVs, 2-4 sequences decoding together, M = 1024 prefill); causal attention forward and
forward+backward; decode attention (1 query against 1024 cached keys); and the fused
norm/activation/loss kernels.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from minillm.kernels import native, reference  # noqa: E402

try:
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
except ImportError:
    torch = None


def bench(fn, min_repeats=5, max_repeats=21, budget=1.0):
    """Median seconds of fn() over repeats (at least min_repeats, more while under budget s)."""
    time.sleep(0.2)                       # let the other thread pool stop spinning (see above)
    fn()                                  # warm-up: page faults, thread start, caches
    times = []
    while len(times) < min_repeats or (len(times) < max_repeats and sum(times) < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def interleaved(fns, rounds=9):
    """Median seconds of each fn over `rounds` rounds that time every fn once, in turn."""
    time.sleep(0.2)
    for fn in fns:
        fn()                              # warm-up
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


def ms(t):
    return "-" if t is None else f"{t * 1e3:9.3f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:6.2f}x"


def table(title, header, rows):
    print(f"\n{title}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(r)


# ----------------------------------------------------------------------------------- matmul
MATMUL_SHAPES = [  # (label, M, K, N): out (M, N) = x (M, K) @ w (N, K)^T
    ("train qkv", 2048, 384, 1152), ("train attn-out", 2048, 384, 384),
    ("train fc", 2048, 384, 1536), ("train fc-proj", 2048, 1536, 384),
    ("train lm-head", 2048, 384, 8192),
    ("gpt2 decode qkv", 1, 768, 2304), ("gpt2 decode attn-out", 1, 768, 768),
    ("gpt2 decode fc", 1, 768, 3072), ("gpt2 decode fc-proj", 1, 3072, 768),
    ("gpt2 decode lm-head", 1, 768, 50257),
    ("gpt2 decode x2 qkv", 2, 768, 2304), ("gpt2 decode x3 fc", 3, 768, 3072),
    ("gpt2 decode x4 fc", 4, 768, 3072),
    ("gpt2 prefill qkv", 1024, 768, 2304), ("gpt2 prefill attn-out", 1024, 768, 768),
    ("gpt2 prefill fc", 1024, 768, 3072), ("gpt2 prefill fc-proj", 1024, 3072, 768),
    ("gpt2 prefill lm-head", 1024, 768, 50257),
]


def bench_matmul(rng):
    rows = []
    for label, M, K, N in MATMUL_SHAPES:
        x = rng.standard_normal((M, K), dtype=np.float32)
        w = rng.standard_normal((N, K), dtype=np.float32)
        out = np.empty((M, N), np.float32)
        t_nat = bench(lambda: native.matmul(out, x, w))
        t_ref = bench(lambda: reference.matmul(out, x, w))
        t_blas = bench(lambda: np.matmul(x, w.T))
        gflops = 2.0 * M * N * K / t_nat / 1e9
        rows.append(f"{label:22s} {M:5d} {K:5d} {N:6d} {ms(t_nat)} {ms(t_ref)} {ms(t_blas)} "
                    f"{gflops:8.1f} {ratio(t_blas, t_nat):>9s}")
    table("matmul  (ms; GF/s of native; blas/native > 1 means native is faster)",
          f"{'shape':22s} {'M':>5s} {'K':>5s} {'N':>6s} {'native':>9s} {'reference':>9s} "
          f"{'np.matmul':>9s} {'GF/s':>8s} {'blas/nat':>9s}", rows)


# ----------------------------------------------------------------------------------- attention
def torch_sdpa(q, k, v, scale, causal, backward):
    """A callable timing torch's scaled_dot_product_attention (+ backward) on copies of q, k, v."""
    if torch is None:
        return None
    tq, tk, tv = (torch.tensor(a, requires_grad=backward) for a in (q, k, v))
    tdo = torch.ones(q.shape)

    def run():
        out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal,
                                                               scale=scale)
        if backward:
            out.backward(tdo)
    return run


def bench_attention(rng):
    rows = []
    for B, H, T, D in [(8, 6, 256, 64), (1, 12, 1024, 64)]:
        q, k, v, dout = (rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(4))
        scale = 1.0 / np.sqrt(D)
        out, lse = np.empty_like(q), np.empty((B, H, T), np.float32)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)

        def fwd(mod):
            return lambda: mod.attention_forward(out, lse, q, k, v, scale)

        def fwd_bwd(mod):
            def run():
                mod.attention_forward(out, lse, q, k, v, scale)
                mod.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale)
            return run

        for what, make, backward in (("forward", fwd, False), ("fwd+bwd", fwd_bwd, True)):
            t_torch_fn = torch_sdpa(q, k, v, scale, True, backward)
            if t_torch_fn:   # native and torch in turn, so a slow spell of the host hits both
                t_nat, t_torch = interleaved([make(native), t_torch_fn])
            else:
                t_nat, t_torch = bench(make(native)), None
            t_ref = bench(make(reference), min_repeats=1, max_repeats=3)
            rows.append(f"B{B} H{H} T{T} D{D:<3d} {what:8s} {ms(t_nat)} {ms(t_ref)} {ms(t_torch)} "
                        f"{ratio(t_ref, t_nat):>9s} {ratio(t_torch, t_nat):>9s}")

    # decode: 1 new query per sequence against 1024 cached keys (GPT-2 shape: 12 heads of 64)
    B, H, S, D = 1, 12, 1024, 64
    q = rng.standard_normal((B, H, D), dtype=np.float32)
    kc, vc = (rng.standard_normal((B, H, S, D), dtype=np.float32) for _ in range(2))
    lengths = np.full(B, S, np.int32)
    out = np.empty((B, H, D), np.float32)
    t_nat = bench(lambda: native.attention_decode(out, q, kc, vc, lengths, 0.125))
    t_ref = bench(lambda: reference.attention_decode(out, q, kc, vc, lengths, 0.125))
    t_torch = None
    if torch is not None:
        tq, tk, tv = torch.tensor(q[:, :, None]), torch.tensor(kc), torch.tensor(vc)
        t_torch = bench(lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                                                  scale=0.125))
    rows.append(f"decode 1 vs {S} H{H} D{D} {'':4s} {ms(t_nat)} {ms(t_ref)} {ms(t_torch)} "
                f"{ratio(t_ref, t_nat):>9s} {ratio(t_torch, t_nat):>9s}")
    table("attention, causal  (ms; ref/nat and torch/nat > 1 mean native is faster)",
          f"{'shape':20s} {'pass':8s} {'native':>9s} {'reference':>9s} {'torch':>9s} "
          f"{'ref/nat':>9s} {'torch/nat':>9s}", rows)


# ----------------------------------------------------------------------------------- fused kernels
def bench_fused(rng):
    N, C, F, V = 2048, 384, 1536, 8192            # training model: B*T rows, d_model, ffn, vocab
    x, dy = (rng.standard_normal((N, C), dtype=np.float32) for _ in range(2))
    w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    y, mean, rstd = np.empty_like(x), np.empty(N, np.float32), np.empty(N, np.float32)
    dx, dw, db = np.empty_like(x), np.empty(C, np.float32), np.empty(C, np.float32)
    h, dh = (rng.standard_normal((N, F), dtype=np.float32) for _ in range(2))
    g = np.empty_like(h)
    logits = rng.standard_normal((N, V), dtype=np.float32)
    targets = rng.integers(0, V, N).astype(np.int32)
    loss, dlogits = np.empty(N, np.float32), np.empty_like(logits)
    cases = [
        ("layernorm fwd (2048, 384)", lambda m: m.layernorm_forward(y, mean, rstd, x, w, b, 1e-5)),
        ("layernorm bwd (2048, 384)",
         lambda m: m.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd)),
        ("rmsnorm fwd (2048, 384)", lambda m: m.rmsnorm_forward(y, rstd, x, w, 1e-6)),
        ("gelu fwd (2048, 1536)", lambda m: m.gelu_forward(g, h)),
        ("gelu bwd (2048, 1536)", lambda m: m.gelu_backward(g, dh, h)),
        ("swiglu fwd (2048, 1536)", lambda m: m.swiglu_forward(g, h, dh)),
        ("cross-entropy (2048, 8192)",
         lambda m: m.cross_entropy(loss, dlogits, logits, targets, 1e-4, 1.0 / N)),
    ]
    rows = []
    for label, call in cases:
        t_nat = bench(lambda: call(native))
        t_ref = bench(lambda: call(reference))
        rows.append(f"{label:28s} {ms(t_nat)} {ms(t_ref)} {ratio(t_ref, t_nat):>9s}")
    table("fused kernels  (ms; ref/nat > 1 means native is faster)",
          f"{'kernel':28s} {'native':>9s} {'reference':>9s} {'ref/nat':>9s}", rows)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main():
    if native.lib is None:
        raise SystemExit("native kernels are not built: pip install -e . first")
    print(f"CPU: {cpu_name()}; load average at start: {load_average()}")
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
          + (f", torch {torch.__version__} with {torch.get_num_threads()} threads" if torch else
             ", torch not installed"))
    info = native.cpu_features()
    print(f"CPU: {info['cpu']}; kernel variant {info['isa']} (MINILLM_ISA={info['requested']}); "
          f"load {open('/proc/loadavg').read().split()[0] if os.path.exists('/proc/loadavg') else '?'}")
    sections = {"matmul": bench_matmul, "attention": bench_attention, "fused": bench_fused}
    chosen = sys.argv[1:] or list(sections)
    for name in chosen:
        if name not in sections:
            raise SystemExit(f"section: expected one of {sorted(sections)}, got {name!r}")
    rng = np.random.default_rng(0)
    for name in chosen:
        sections[name](rng)


if __name__ == "__main__":
    main()
