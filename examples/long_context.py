"""Long context: train a small Llama-style model at a short context, then measure perplexity at
1x, 2x, 4x and 8x that length with RoPE unscaled, position interpolation (PI), NTK-aware, dynamic
NTK and YaRN scaling (PI and YaRN also after a short fine-tune at the longer length), and for the
same model trained with ALiBi instead of RoPE.

    python examples/long_context.py            # ~3-5 minutes on 2 cores
    python examples/long_context.py --quick    # fewer steps, for a smoke test

Everything is byte-level on CPython's pydoc text (minillm.train.corpus_text()), trained with
minillm.train.train. Scaling an existing model is only a new config around the same weights:
Transformer(ModelConfig(..., rope_scaling={...}), params=model.params).
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.io import write_tokens  # noqa: E402
from minillm.tokenizer import ByteTokenizer  # noqa: E402
from minillm.train import TrainConfig, corpus_text, train  # noqa: E402


def perplexity(model, val, length, n_windows, rng_seed=0, batch=4):
    """exp(mean next-token loss) over n_windows fixed random windows of `length` tokens of val."""
    rng = np.random.default_rng([rng_seed, length])
    starts = rng.integers(0, len(val) - length - 1, size=n_windows)
    losses = []
    for b in range(0, n_windows, batch):
        rows = np.stack([val[s:s + length + 1] for s in starts[b:b + batch]]).astype(np.int64)
        losses.append(model.loss(rows[:, :-1], rows[:, 1:]) * len(rows))
    return float(np.exp(np.sum(losses) / n_windows))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--finetune-steps", type=int, default=60)
    ap.add_argument("--windows", type=int, default=16, help="evaluation windows per length")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.finetune_steps, args.windows = 60, 10, 4
    t0 = time.perf_counter()
    L0 = args.train_len
    lengths = [L0, 2 * L0, 4 * L0, 8 * L0]
    s = 8.0                                       # scale factor: the 8x length
    ids = np.asarray(ByteTokenizer().encode(corpus_text()), dtype=np.int64)
    cut = int(len(ids) * 0.9)
    val = ids[cut:]
    quiet = lambda msg: None
    with tempfile.TemporaryDirectory() as tmp:
        train_path = os.path.join(tmp, "train.bin")
        write_tokens(train_path, ids[:cut], 256)
        base = dict(arch="llama", vocab_size=256, n_layer=4, n_head=4, n_kv_head=2, d_model=96, max_seq_len=L0)

        def fit(model, seq_len, steps, lr, name, batch):
            tc = TrainConfig(train_data=train_path, out_dir=os.path.join(tmp, name), batch_size=batch,
                             seq_len=seq_len, max_steps=steps, lr=lr, min_lr=lr / 10,
                             warmup_steps=max(1, steps // 20), ckpt_interval=10**9, log_interval=10**9,
                             spike_z=50.0)  # tiny models' early grad norms swing: no false rollbacks
            ts = time.perf_counter()
            model, hist = train(model, tc, log=quiet, resume=False)
            print(f"  {name}: {steps} steps at T={seq_len}, final loss {hist[-1]['loss']:.3f} "
                  f"({time.perf_counter() - ts:.0f} s)", flush=True)
            return model

        print(f"training at context {L0} on {cut:,} byte tokens ({os.environ['OMP_NUM_THREADS']} threads)")
        rope = fit(Transformer(ModelConfig(**base), seed=0), L0, args.steps, 3e-3, "rope", 12)
        alibi = fit(Transformer(ModelConfig(**base, position="alibi"), seed=0), L0, args.steps, 3e-3, "alibi", 12)

        def scaled(scaling, max_len=L0):
            cfg = ModelConfig(**{**base, "max_seq_len": max_len}, rope_scaling=scaling)
            return Transformer(cfg, params={k: v.copy() for k, v in rope.params.items()})

        pi = {"rope_type": "linear", "factor": s}
        yarn = {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": L0}
        ft_len = 4 * L0                           # fine-tune at 4x: half the cost of 8x, still long
        pi_ft = fit(scaled(pi), ft_len, args.finetune_steps, 1e-3, "PI fine-tune", 4)
        yarn_ft = fit(scaled(yarn), ft_len, args.finetune_steps, 1e-3, "YaRN fine-tune", 4)

        rows = [
            ("RoPE, no scaling", lambda L: rope),
            (f"PI (linear, s={s:g})", lambda L: scaled(pi)),
            (f"PI + {args.finetune_steps}-step fine-tune at {ft_len}", lambda L: pi_ft),
            (f"NTK-aware (s={s:g})", lambda L: scaled({"rope_type": "ntk", "factor": s})),
            ("dynamic NTK (s = L / L0)", lambda L: scaled({"rope_type": "dynamic", "factor": 1.0,
                                                          "original_max_position_embeddings": L0}, max_len=L)),
            (f"YaRN (s={s:g})", lambda L: scaled(yarn)),
            (f"YaRN + {args.finetune_steps}-step fine-tune at {ft_len}", lambda L: yarn_ft),
            ("ALiBi (trained with it)", lambda L: alibi),
        ]
        print(f"\nperplexity (bytes) on held-out text, {args.windows} windows per length; trained at T={L0}")
        header = f"{'method':44s}" + "".join(f"{f'{L // L0}x ({L})':>12s}" for L in lengths)
        print(header)
        print("-" * len(header))
        for name, make in rows:
            cells = [perplexity(make(L), val, L, args.windows) for L in lengths]
            print(f"{name:44s}" + "".join(f"{c:12.3f}" for c in cells), flush=True)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
