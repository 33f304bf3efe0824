"""Training-step benchmark: minillm vs PyTorch eager on the same model and batch.

    python examples/bench_train.py            # both flavours, 2 threads, median of 5 steps each
    python examples/bench_train.py --steps 10 --flavours llama

Model: 6 layers, d_model 384, 6 heads, ctx 256, vocab 8192, batch 8 (presets gpt2-6l / llama-6l).
One step = forward + backward + gradient clipping + AdamW update. PyTorch runs the same weights
(written with minillm.loaders.save_hf) through Hugging Face transformers' GPT2LMHeadModel /
LlamaForCausalLM in eager mode with torch.optim.AdamW. Each library runs in its own process so that
neither's thread pools (OpenMP, OpenBLAS) or wait policies disturb the other; both use 2 threads,
and OMP_WAIT_POLICY=PASSIVE. minillm's step raises glibc's malloc thresholds (as minillm.train does,
kernels/memory.py); torch runs with its allocator as shipped.
The two processes take turns, one step each (torch, minillm, torch, ...), so a burst of load from
elsewhere on the machine hits both alike; the table gives each one's median and the load average
(/proc/loadavg) before and after.
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
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def timed(step):
    """Seconds one call of step() takes."""
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def minillm_step(model, x, y):
    """The minillm training step (forward, cross-entropy, backward, clipping, AdamW) as a function."""
    from minillm.kernels.memory import keep_freed_memory
    from minillm.optim import AdamW, clip_coefficient, global_grad_norm
    keep_freed_memory()   # as minillm.train.train does: no page faults for each step's temporaries
    opt = AdamW(model.params, lr=1e-4, weight_decay=0.1)

    def step():
        _, grads = model.loss_and_grads(x, y)
        coef = clip_coefficient(global_grad_norm(grads), 1.0)   # clipping to norm 1, inside AdamW's pass
        opt.step(grads, grad_scale=coef)
    return step


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


def torch_worker(folder, threads):
    """Runs in a child process: one timed PyTorch step per "step" line on stdin, its seconds printed
    as one line on stdout; "ready" once the model is loaded."""
    step = torch_step(folder, threads)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        print(json.dumps(timed(step)), flush=True)


class TorchProcess:
    """The PyTorch step of `model` on (x, y) in a child process, run one step at a time by step()
    (seconds), or None from start() when torch/transformers are missing."""

    def __init__(self, proc, folder):
        self.proc, self.folder = proc, folder

    @classmethod
    def start(cls, model, x, y):
        from minillm.loaders import save_hf
        folder = tempfile.TemporaryDirectory()
        save_hf(model, folder.name)
        np.save(os.path.join(folder.name, "x.npy"), x)
        np.save(os.path.join(folder.name, "y.npy"), y)
        proc = subprocess.Popen([sys.executable, __file__, "--torch-worker", folder.name], text=True, env=TORCH_ENV,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.stdout.readline().strip() != "ready":
            err = proc.communicate()[1]
            folder.cleanup()
            if "No module named 'torch'" in err or "No module named 'transformers'" in err:
                return None
            raise RuntimeError(f"torch worker failed:\n{err}")
        return cls(proc, folder)

    def step(self):
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker failed:\n{self.proc.communicate()[1]}")
        return json.loads(line)

    def close(self):
        self.proc.communicate("quit\n")
        self.folder.cleanup()


def bench_pair(model, x, y, n, warmup=2):
    """Median seconds per step of minillm and of PyTorch (nan without torch), the two taking turns."""
    ours = minillm_step(model, x, y)
    theirs = TorchProcess.start(model, x, y)
    t_ours, t_torch = [], []
    try:
        for i in range(warmup + n):
            if theirs is not None:
                t_torch.append(theirs.step())
            t_ours.append(timed(ours))
    finally:
        if theirs is not None:
            theirs.close()
    median = lambda ts: statistics.median(ts[warmup:]) if ts else float("nan")
    return median(t_ours), median(t_torch)


def load_average():
    """The 1-minute load average, or nan where /proc/loadavg does not exist."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--flavours", nargs="+", default=["gpt2", "llama"])
    ap.add_argument("--torch-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"])
    if args.torch_worker:
        return torch_worker(args.torch_worker, threads)

    from minillm import ModelConfig, Transformer, kernels
    info = kernels.cpu_features()
    print(f"CPU: {info['cpu']}; kernels: {kernels.backend()} ({info['isa']}), threads: {threads}, "
          f"batch {args.batch}, median of {args.steps} steps each, minillm and torch taking turns")
    print(f"{'flavour':8} {'params':>8} {'minillm s/step':>15} {'torch s/step':>13} {'ratio':>6} "
          f"{'minillm tok/s':>14} {'torch tok/s':>12} {'load before/after':>18}")
    missing = False
    for flavour in args.flavours:
        cfg = ModelConfig.preset(f"{flavour}-6l")
        model = Transformer(cfg, seed=0)
        rng = np.random.default_rng(0)
        x = rng.integers(0, cfg.vocab_size, (args.batch, cfg.max_seq_len))
        y = rng.integers(0, cfg.vocab_size, (args.batch, cfg.max_seq_len))
        load = load_average()
        t_ours, t_torch = bench_pair(model, x, y, args.steps)
        missing |= t_torch != t_torch
        print(f"{flavour:8} {cfg.num_params() / 1e6:7.1f}M {t_ours:15.3f} {t_torch:13.3f} {t_ours / t_torch:6.2f} "
              f"{x.size / t_ours:14,.0f} {x.size / t_torch:12,.0f} {load:9.2f}/{load_average():.2f}")
    if missing:
        print("(torch/transformers not installed: pip install torch==2.13.0 transformers for the comparison)")


if __name__ == "__main__":
    main()
