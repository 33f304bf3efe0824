"""Quantization report: perplexity, KL divergence, size and decode speed of one small trained model
under every quantization format minillm has.

    python examples/quantization_report.py                      # trains a small Llama (a few minutes)
    python examples/quantization_report.py --run runs/qreport   # reuse that run (trains it if absent)

The model: Llama flavour, d_model 256, 4 layers, ffn 768 (so every matrix splits into 256-weight
K-quant super-blocks and 128-weight INT4 groups), BPE 2048 on CPython's pydoc text (90% train / 10%
held out). Perplexity and the mean KL(fp32 || quantized) of the next-token distributions are measured
on held-out windows; calibration for GPTQ / AWQ / LLM.int8 uses training windows only. Decode tok/s:
greedy generation of 48 tokens with minillm.inference.generate (KV cache), median of 3.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from minillm.io import read_tokens  # noqa: E402
from minillm.quant import model_bytes, quantize  # noqa: E402
from minillm.train import TrainConfig, prepare_data, train  # noqa: E402

SEQ = 128
ROWS = [  # label, method, format, bits, needs calibration
    ("fp32", None, None, None, False),
    ("INT8", "rtn", "int8", 8, False),
    ("LLM.int8", "rtn", "llm_int8", 8, True),
    ("INT4-RTN", "rtn", "int4", 4, False),
    ("INT4-GPTQ", "gptq", "int4", 4, True),
    ("INT4-AWQ", "awq", "int4", 4, True),
    ("NF4", "rtn", "nf4", 4, False),
    ("Q8_0", "rtn", "q8_0", 8, False),
    ("Q4_0", "rtn", "q4_0", 4, False),
    ("Q4_K", "rtn", "q4_K", 4, False),
]


def get_model(run, steps):
    os.makedirs(run, exist_ok=True)
    train_path, val_path, tok = prepare_data(run, "bpe", 2048, log=lambda s: None)
    ckpt = latest_checkpoint(os.path.join(run, "ckpt"))
    if ckpt is None or load_checkpoint(ckpt)[3].get("step", 0) < steps:
        cfg = ModelConfig.preset("llama-small", vocab_size=tok.vocab_size, ffn_dim=768, max_seq_len=SEQ)
        tc = TrainConfig(train_data=train_path, val_data=val_path, out_dir=os.path.join(run, "ckpt"),
                         batch_size=8, seq_len=SEQ, max_steps=steps, lr=3e-3, min_lr=3e-4,
                         warmup_steps=steps // 20, eval_interval=steps, ckpt_interval=steps // 2)
        print(f"training {cfg.num_params():,} parameters for {steps} steps in {run} ...", flush=True)
        t = time.time()
        train(Transformer(cfg, seed=0), tc, log=lambda s: None)
        print(f"trained in {time.time() - t:.0f} s", flush=True)
        ckpt = latest_checkpoint(os.path.join(run, "ckpt"))
    return load_checkpoint(ckpt)[0], read_tokens(train_path)[0], read_tokens(val_path)[0]


def windows(tokens, n, seed):  # n windows of SEQ + 1 tokens -> (n, SEQ + 1)
    starts = np.random.default_rng(seed).integers(0, len(tokens) - SEQ - 1, n)
    return np.stack([np.asarray(tokens[s:s + SEQ + 1], dtype=np.int64) for s in starts])


def log_softmax(z):  # (..., V) float32 -> float64
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def evaluate(model, held, ref_logp):  # -> (ppl, mean KL(fp32 || model), logp)
    logp = np.concatenate([log_softmax(model.forward(held[i:i + 8, :-1])) for i in range(0, len(held), 8)])
    nll = -np.take_along_axis(logp, held[:, 1:, None], axis=-1).mean()
    kl = 0.0 if ref_logp is None else float(np.mean(np.sum(np.exp(ref_logp) * (ref_logp - logp), axis=-1)))
    return float(np.exp(nll)), kl, logp


def decode_speed(model, prompt, n_new=48):
    from minillm.inference import generate
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        generate(model, prompt, n_new)
        ts.append(time.perf_counter() - t)
    return n_new / float(np.median(ts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/qreport")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-windows", type=int, default=48)
    ap.add_argument("--calib-windows", type=int, default=32)
    args = ap.parse_args()
    model, train_tokens, val_tokens = get_model(args.run, args.steps)
    held = windows(val_tokens, args.eval_windows, seed=1)
    calib = windows(train_tokens, args.calib_windows, seed=2)[:, :SEQ]
    prompt = held[0, :16]
    print(f"model: {model.config.num_params():,} params; held-out {held[:, 1:].size:,} tokens; "
          f"calibration {calib.size:,} tokens; group size 128\n")
    print(f"| {'format':9} | bits/weight | model MB | perplexity | Δppl vs fp32 | mean KL to fp32 | decode tok/s | quantize s |")
    print(f"|{'-' * 11}|-------------|----------|------------|--------------|-----------------|--------------|------------|")
    ref_logp, ref_ppl = None, None
    for label, method, fmt, bits, needs in ROWS:
        t = time.time()
        qm = model if method is None else quantize(model, method, bits, 128, fmt, calib if needs else None)
        tq = time.time() - t
        ppl, kl, logp = evaluate(qm, held, ref_logp)
        if ref_logp is None:
            ref_logp, ref_ppl = logp, ppl
        linear = [n for n in model.params if n.endswith("proj.weight")]
        bpw = 32.0 if method is None else np.mean([qm.quantized[n].bits_per_weight for n in linear])
        print(f"| {label:9} | {bpw:11.2f} | {model_bytes(qm) / 1e6:8.2f} | {ppl:10.3f} | "
              f"{100 * (ppl - ref_ppl) / ref_ppl:+11.2f}% | {kl:15.5f} | {decode_speed(qm, prompt):12.1f} | {tq:10.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
