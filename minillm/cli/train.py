"""`minillm train`: tokenise CPython's pydoc text (minillm.train.corpus_text) with a BPE trained on
it (or bytes), train a small Llama-flavoured model with minillm.train.train, and leave a run folder
(minillm.run_folder) that generate/chat/quantize/sft/rag load."""
import os
import shutil

import numpy as np

from ..io.tokens import write_tokens
from ..model import ModelConfig, Transformer
from ..run_folder import checkpoint_dir, latest_run_checkpoint, tokenizer_path
from ..tokenizer import ByteTokenizer, cached_bpe
from ..train import TokenBatches, TrainConfig, corpus_text, train


def loss_curve(history, path=None, width=60, height=12):
    """Save the loss curve as a PNG when matplotlib is installed; return it as text either way."""
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if path:
        try:  # matplotlib is optional (pip install minillm[plot]): without it, only the text curve
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(*zip(*pts), label="train")
            if val:
                ax.plot(*zip(*val), "o-", label="val")
            ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend(), ax.grid(alpha=0.3)
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
        except ImportError:
            pass
    losses = np.array([l for _, l in pts])
    cols = np.array_split(losses, min(width, len(losses)))
    ys = np.array([c.mean() for c in cols])
    lo, hi = ys.min(), ys.max()
    span = max(hi - lo, 1e-12)
    row_of = np.rint((hi - ys) / span * (height - 1)).astype(int)           # one '*' per column
    rows = []
    for r in range(height):
        line = "".join("*" if row_of[c] == r else " " for c in range(len(ys)))
        rows.append(f"{hi - span * r / max(height - 1, 1):7.3f} |{line}")
    rows.append("        +" + "-" * len(ys))
    rows.append(f"         step 1 .. {pts[-1][0]}")
    return "\n".join(rows)


def get_tokenizer(kind, text, vocab_size, run_dir):
    """A BPE vocabulary trained on `text` (cached on disk), or bytes. Saved as run_dir/tokenizer.model."""
    if kind == "bpe":
        tok = cached_bpe(text, vocab_size, os.path.join(run_dir, "tokenizer_cache"))
    else:
        tok = ByteTokenizer()
    tok.save(tokenizer_path(run_dir))
    return tok


def prepare_data(out_dir, tokenizer_kind, vocab_size, log=print):
    """Tokenise the corpus (90% train, 10% val) into token files; returns (train, val, tokenizer)."""
    text = corpus_text()
    tok = get_tokenizer(tokenizer_kind, text, vocab_size, out_dir)
    cut = int(len(text) * 0.9)
    paths = []
    for name, part in (("train", text[:cut]), ("val", text[cut:])):
        ids = np.asarray(tok.encode(part), dtype=np.int64)
        path = os.path.join(out_dir, f"{name}.bin")
        write_tokens(path, ids, tok.vocab_size)
        paths.append(path)
        log(f"{name}: {len(ids):,} tokens -> {path}")
    return paths[0], paths[1], tok


def register(subparsers):
    p = subparsers.add_parser("train", help="train a small Llama-style model on CPython's docs",
                              description=main.__doc__)
    p.add_argument("--out", default="runs/minillm", help="output folder (checkpoints, data, curve)")
    p.add_argument("--preset", default="llama-small", help="model preset (minillm.model.PRESETS)")
    p.add_argument("--tokenizer", default="bpe", choices=["bpe", "byte"], help="vocabulary")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=450)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in --out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=main)


def main(args):
    """Train a small Llama-flavoured model on CPython's pydoc text and save a checkpoint; resumes
    from the newest checkpoint in --out unless --fresh."""
    if args.fresh and os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)
    train_path, val_path, tok = prepare_data(args.out, args.tokenizer, args.vocab_size)
    cfg = ModelConfig.preset(args.preset, vocab_size=tok.vocab_size, max_seq_len=max(args.seq_len, 16))
    model = Transformer(cfg, seed=args.seed)
    print(f"model: {args.preset}, {cfg.num_params():,} parameters, vocab {cfg.vocab_size}")
    tc = TrainConfig(train_data=train_path, val_data=val_path, out_dir=checkpoint_dir(args.out),
                     batch_size=args.batch_size, seq_len=args.seq_len, max_steps=args.steps, lr=args.lr,
                     min_lr=args.lr / 10, warmup_steps=max(1, args.steps // 20), grad_accum=args.grad_accum,
                     eval_interval=max(1, args.steps // 6), ckpt_interval=max(1, args.steps // 6),
                     activation_checkpointing=args.activation_checkpointing, seed=args.seed)
    sample = TokenBatches(train_path, tc.batch_size, tc.seq_len, tc.seed).batch(0)[0]
    full, ckpt = model.activation_bytes(sample), model.activation_bytes(sample, checkpoint=True)
    print(f"activation memory per micro-batch: {full / 2**20:.1f} MiB stored, "
          f"{ckpt / 2**20:.1f} MiB with activation checkpointing ({1 - ckpt / full:.0%} saved)")
    model, history = train(model, tc, log=lambda s: print(s, flush=True))
    png = os.path.join(args.out, "loss.png")
    print(loss_curve(history, png))
    if os.path.exists(png):
        print(f"loss curve: {png}")
    print(f"checkpoint: {latest_run_checkpoint(args.out)}  (try: minillm generate --run {args.out} "
          f"--prompt \"The for statement\")")
    return 0
