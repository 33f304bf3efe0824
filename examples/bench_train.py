"""Training-step benchmark: minillm vs PyTorch eager on the same model and batch.

    python examples/bench_train.py            # both flavours, 2 threads, median of 5 steps
    python examples/bench_train.py --steps 10 --flavours llama

Model: 6 layers, d_model 384, 6 heads, ctx 256, vocab 8192, batch 8 (presets gpt2-6l / llama-6l).
One step = forward + backward + gradient clipping + AdamW update. PyTorch runs the same weights
(written with minillm.loaders.save_hf) through Hugging Face transformers' GPT2LMHeadModel /
LlamaForCausalLM in eager mode with torch.optim.AdamW. Each library runs in its own process so that
neither's thread pools (OpenMP, OpenBLAS) or wait policies disturb the other; both use 2 threads.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "2")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def time_steps(step, n, warmup=2):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_minillm(model, x, y, n):
    from minillm.optim import AdamW, clip_grad_norm
    opt = AdamW(model.params, lr=1e-4, weight_decay=0.1)

    def step():
        _, grads = model.loss_and_grads(x, y)
        clip_grad_norm(grads, 1.0)
        opt.step(grads)

    return time_steps(step, n)


def torch_step(folder, threads):
    """The PyTorch training step (forward, cross-entropy, backward, clipping, AdamW) on the weights
    and batch saved in `folder`, as a function; torch and transformers are imported here, in the
    child process that runs it (the `parity` extra)."""
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    tm = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    tm.train()
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-4, weight_decay=0.1)
    tx = torch.tensor(np.load(os.path.join(folder, "x.npy")))
    ty = torch.tensor(np.load(os.path.join(folder, "y.npy")))

    def step():
        logits = tm(tx).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), ty.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        opt.step()
    return step


def torch_worker(folder, n, threads):
    """Runs in a child process: times the PyTorch step on the weights and batch in `folder`."""
    print(json.dumps({"seconds": time_steps(torch_step(folder, threads), n)}))


def bench_torch(model, x, y, n, threads):
    """Median seconds per PyTorch step in a child process, or nan when torch is missing."""
    from minillm.loaders import save_hf
    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "y.npy"), y)
        out = subprocess.run([sys.executable, __file__, "--torch-worker", d, "--steps", str(n)],
                             capture_output=True, text=True)
    if out.returncode != 0:
        if "No module named 'torch'" in out.stderr or "No module named 'transformers'" in out.stderr:
            return float("nan")
        raise RuntimeError(f"torch worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--flavours", nargs="+", default=["gpt2", "llama"])
    ap.add_argument("--torch-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"])
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.steps, threads)

    from minillm import ModelConfig, Transformer, kernels
    info = kernels.cpu_features()
    print(f"CPU: {info['cpu']}; kernels: {kernels.backend()} ({info['isa']}), threads: {threads}, "
          f"batch {args.batch}, median of {args.steps} steps")
    print(f"{'flavour':8} {'params':>8} {'minillm s/step':>15} {'torch s/step':>13} {'ratio':>6} "
          f"{'minillm tok/s':>14} {'torch tok/s':>12}")
    missing = False
    for flavour in args.flavours:
        cfg = ModelConfig.preset(f"{flavour}-6l")
        model = Transformer(cfg, seed=0)
        rng = np.random.default_rng(0)
        x = rng.integers(0, cfg.vocab_size, (args.batch, cfg.max_seq_len))
        y = rng.integers(0, cfg.vocab_size, (args.batch, cfg.max_seq_len))
        t_torch = bench_torch(model, x, y, args.steps, threads)
        missing |= t_torch != t_torch
        t_ours = bench_minillm(model, x, y, args.steps)
        print(f"{flavour:8} {cfg.num_params() / 1e6:7.1f}M {t_ours:15.3f} {t_torch:13.3f} {t_ours / t_torch:6.2f} "
              f"{x.size / t_ours:14,.0f} {x.size / t_torch:12,.0f}")
    if missing:
        print("(torch/transformers not installed: pip install torch==2.13.0 transformers for the comparison)")


if __name__ == "__main__":
    main()
