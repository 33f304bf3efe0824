"""Per-operation profile of one training step: minillm beside torch.profiler on the same step.

    python examples/profile_train.py                  # both flavours, 2 threads, median of 3 steps
    python examples/profile_train.py --flavours llama --steps 5

Model and step as examples/bench_train.py (6 layers, d_model 384, ctx 256, vocab 8192, batch 8;
forward + backward + clipping + AdamW). minillm: every operation the step runs (each GEMM by
shape class and pass, attention, norms, activations, cross-entropy, embeddings, clipping, AdamW)
is wrapped with a wall-clock timer; "other" is the step's time outside them: Python, the
head/residual additions, and the copies/transposes between (B*T, C) and (B, H, T, D). Each
row is the median over the measured steps. torch runs in its own process (same weights and batch,
transformers eager) under torch.profiler; its table lists the top operators by self CPU time.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "2")
# torch's OpenMP threads sleep when idle, as minillm's do (the default OMP_WAIT_POLICY, spinning,
# measured up to 5x slower steps while other jobs shared the 2 cores, and no faster when idle);
# a policy set by the user applies to both
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
TORCH_ENV = dict(os.environ)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")  # before numpy loads: see minillm/__init__.py

import argparse
import collections
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import minillm.kernels
import minillm.model
import minillm.nn.linear
import minillm.optim
from minillm import ModelConfig, Transformer
from minillm.kernels.memory import keep_freed_memory
from minillm.loaders import save_hf
from minillm.optim import AdamW, clip_coefficient, global_grad_norm

TIMES = collections.defaultdict(float)        # operation -> seconds in the current step


def timed(label, fn):
    """fn, adding its wall time to TIMES[label(*args)] (label: a string or a function of the args)."""
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        TIMES[label(*args) if callable(label) else label] += time.perf_counter() - t
        return out
    return wrapper


def gemm_class(shape_w):
    """A GEMM's shape class from its weight (Cout, Cin)."""
    return f"{shape_w[0]}x{shape_w[1]}"


def linear_backward_timed(dy, cache):
    """minillm.nn.linear.linear_backward with each of its three operations timed on its own."""
    x, w, has_bias = cache
    t0 = time.perf_counter()
    dx = dy @ w
    t1 = time.perf_counter()
    dw = dy.T @ x
    t2 = time.perf_counter()
    db = dy.sum(axis=0) if has_bias else None
    t3 = time.perf_counter()
    TIMES[f"GEMM bwd dx  {gemm_class(w.shape)}"] += t1 - t0
    TIMES[f"GEMM bwd dW  {gemm_class(w.shape)}"] += t2 - t1
    if has_bias:
        TIMES["bias grad (sum)"] += t3 - t2
    return dx, dw, db


def linear_backward_group_timed(dy, caches):
    """minillm.nn.linear.linear_backward_group with its dx and dW GEMMs timed on their own."""
    x, ws = caches[0][0], [c[1] for c in caches]
    t0 = time.perf_counter()
    dx = dy @ np.concatenate(ws)
    t1 = time.perf_counter()
    dw = dy.T @ x
    t2 = time.perf_counter()
    db = dy.sum(axis=0) if any(c[2] for c in caches) else None
    t3 = time.perf_counter()
    label = gemm_class((dy.shape[1], x.shape[1])) + " (q,k,v grouped)"
    TIMES[f"GEMM bwd dx  {label}"] += t1 - t0
    TIMES[f"GEMM bwd dW  {label}"] += t2 - t1
    if db is not None:
        TIMES["bias grad (sum)"] += t3 - t2
    bounds = np.cumsum([0] + [w.shape[0] for w in ws])
    return (dx, [dw[lo:hi] for lo, hi in zip(bounds, bounds[1:])],
            [db[lo:hi] if c[2] else None for c, lo, hi in zip(caches, bounds, bounds[1:])])


@contextlib.contextmanager
def instrumented():
    """Every operation of the step wrapped where the model and optimizer look it up; the
    originals are put back on exit."""
    saved = []

    def swap(module, name, new):
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, new)

    k, m, lin = minillm.kernels, minillm.model, minillm.nn.linear
    swap(k, "matmul", timed(lambda out, x, w: f"GEMM fwd     {gemm_class(w.shape)}", k.matmul))
    swap(m, "linear_backward", linear_backward_timed)
    swap(m, "linear_backward_group", linear_backward_group_timed)
    for name, label in (("attention_forward", "attention fwd"), ("attention_backward", "attention bwd"),
                        ("layernorm_forward", "norm fwd"), ("layernorm_backward", "norm bwd"),
                        ("rmsnorm_forward", "norm fwd"), ("rmsnorm_backward", "norm bwd"),
                        ("gelu_forward", "activation fwd"), ("gelu_backward", "activation bwd"),
                        ("swiglu_forward", "activation fwd"), ("swiglu_backward", "activation bwd"),
                        ("rope_forward", "rope fwd"), ("rope_backward", "rope bwd"),
                        ("cross_entropy_forward", "cross-entropy fwd+bwd"),
                        ("embedding_forward", "embedding fwd"), ("embedding_backward", "embedding bwd")):
        if hasattr(m, name):
            swap(m, name, timed(label, getattr(m, name)))
    # the GEMM inside is timed too: the difference is linear_forward's bias add
    swap(m, "linear_forward", timed("linear fwd (GEMM + bias)", lin.linear_forward))
    swap(m, "linear_forward_group", timed("linear fwd (GEMM + bias)", lin.linear_forward_group))
    try:
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def profile_minillm(cfg, x, y, steps):
    """{operation: median seconds per step} over `steps` steps after one warm-up step."""
    with instrumented():
        return _profile_steps(Transformer(cfg, seed=0), x, y, steps)


def _profile_steps(model, x, y, steps):
    """profile_minillm's loop, inside instrumented()."""
    keep_freed_memory()   # as bench_train's step and minillm.train.train
    opt = AdamW(model.params, lr=1e-4, weight_decay=0.1)
    norm = timed("clip: global grad norm", global_grad_norm)
    adamw = timed("AdamW (clip scale folded in)", opt.step)
    rows = collections.defaultdict(list)
    for i in range(steps + 1):
        TIMES.clear()
        t = time.perf_counter()
        _, grads = model.loss_and_grads(x, y)
        adamw(grads, grad_scale=clip_coefficient(norm(grads), 1.0))   # as bench_train's step
        total = time.perf_counter() - t
        if i == 0:
            continue
        gemm_fwd = sum(v for k, v in TIMES.items() if k.startswith("GEMM fwd"))
        TIMES["bias add (linear fwd)"] = TIMES.pop("linear fwd (GEMM + bias)") - gemm_fwd
        TIMES["other: Python, residuals, copies/transposes"] = total - sum(TIMES.values())
        TIMES["step total"] = total
        for k_, v in TIMES.items():
            rows[k_].append(v)
    return {k_: statistics.median(v) for k_, v in rows.items()}


def print_minillm(flavour, prof):
    total = prof.pop("step total")
    print(f"\nminillm {flavour}: one step {total * 1e3:.0f} ms (median), kernels "
          f"{minillm.kernels.backend()}/{minillm.kernels.cpu_features()['isa']}")
    print(f"{'operation':46} {'ms':>8} {'share':>6}")
    for name, sec in sorted(prof.items(), key=lambda kv: -kv[1]):
        print(f"{name:46} {sec * 1e3:8.1f} {sec / total:6.1%}")


def torch_worker(folder, steps, threads):
    """Child process: torch.profiler table of one step (after warm-up) on the weights in folder."""
    import torch
    from bench_train import torch_step   # the same step bench_train.py times (examples/ is on sys.path)
    step = torch_step(folder, threads)
    step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    print(f"torch step {statistics.median(times) * 1e3:.0f} ms (median of {steps}, unprofiled)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=40))


def profile_torch(cfg, x, y, steps, threads):
    """torch's table (text), or a note when torch/transformers are missing."""
    model = Transformer(cfg, seed=0)
    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "y.npy"), y)
        out = subprocess.run([sys.executable, __file__, "--torch-worker", d, "--steps", str(steps)],
                             capture_output=True, text=True, env=TORCH_ENV)
    if out.returncode != 0:
        if "No module named" in out.stderr:
            return "(torch/transformers not installed: pip install minillm[parity])"
        raise RuntimeError(f"torch worker failed:\n{out.stderr}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--flavours", nargs="+", default=["gpt2", "llama"])
    ap.add_argument("--torch-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"])
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.steps, threads)
    for flavour in args.flavours:
        cfg = ModelConfig.preset(f"{flavour}-6l")
        rng = np.random.default_rng(0)
        x = rng.integers(0, cfg.vocab_size, (args.batch, cfg.max_seq_len))
        y = rng.integers(0, cfg.vocab_size, (args.batch, cfg.max_seq_len))
        print(f"\n=== {flavour}: batch {args.batch} x {cfg.max_seq_len}, {threads} threads, "
              f"load {open('/proc/loadavg').read().split()[0]}")
        print(profile_torch(cfg, x, y, args.steps, threads))
        print_minillm(flavour, profile_minillm(cfg, x, y, args.steps))


if __name__ == "__main__":
    main()
