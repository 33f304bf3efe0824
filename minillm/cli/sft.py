"""`minillm sft`: supervised fine-tuning of a model trained by `minillm train` on JSON-lines data.

    minillm sft --run runs/minillm --data data.jsonl --out runs/sft [--template chatml] [--pack]

data.jsonl holds {"instruction", "input", "output"} records or {"messages": [...]} chats (sft.py).
The fine-tuned model is saved as a checkpoint under OUT/ckpt (load it with
minillm.checkpoint.load_checkpoint) together with OUT/tokenizer.model, so OUT is itself a run folder
that `minillm generate` / `minillm chat` and a further `minillm sft` can use.
"""
import os
import shutil
import time

import numpy as np

from ..align.sft import SFTConfig, load_jsonl, sft_eval_loss, sft_train, tokenize_conversation
from ..checkpoint import save_checkpoint
from ..optim import AdamW
from ..train import fmt_time
from .args import existing_file, existing_folder, fraction, output_folder, positive_float, positive_int, seed
from ..run_folder import (TOKENIZER_FILE, checkpoint_dir, latest_run_checkpoint, load_run_model,
                          load_run_tokenizer)


def register(subparsers):
    p = subparsers.add_parser("sft", help="supervised fine-tuning on instruction or chat JSON lines",
                              description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/minillm", type=existing_folder, help="run folder of `minillm train` (tokenizer + ckpt/)")
    p.add_argument("--data", required=True, type=existing_file, help="JSON lines: instruction or chat records")
    p.add_argument("--out", default="runs/sft", type=output_folder, help="output run folder")
    p.add_argument("--template", default="chatml", choices=["chatml", "llama2"])
    p.add_argument("--steps", type=positive_int, default=200)
    p.add_argument("--batch-size", type=positive_int, default=16, help="examples per step")
    p.add_argument("--lr", type=positive_float, default=3e-4)
    p.add_argument("--pack", action="store_true", help="pack examples into rows of --seq-len tokens")
    p.add_argument("--seq-len", type=positive_int, default=None, help="packing row length / truncation "
                   "(default: the model's max_seq_len)")
    p.add_argument("--val-frac", type=fraction, default=0.1, help="held-out share of the records")
    p.add_argument("--seed", type=seed, default=0)
    p.set_defaults(func=main)


def main(args):
    model = load_run_model(args.run, "--run")
    tok = load_run_tokenizer(args.run)
    seq_len = args.seq_len or model.config.max_seq_len
    if model.config.position_scheme == "learned":
        seq_len = min(seq_len, model.config.max_seq_len)
    convs = load_jsonl(args.data)
    examples = [tokenize_conversation(tok, m, args.template, max_len=seq_len) for m in convs]
    examples = [e for e in examples if e[1].sum() > 0]  # a response cut off entirely teaches nothing
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(examples))
    n_val = int(round(args.val_frac * len(examples))) if len(examples) > 1 else 0
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    print(f"sft: {len(train)} train / {len(val)} held-out conversations from {args.data}, template "
          f"{args.template}, {'packed' if args.pack else 'padded'} batches, model {latest_run_checkpoint(args.run)}")
    cfg = SFTConfig(lr=args.lr, min_lr=args.lr / 10, warmup_steps=max(1, args.steps // 20), steps=args.steps,
                    batch_size=args.batch_size, pack=args.pack, seq_len=seq_len, seed=args.seed)
    eval_fn = (lambda m: {"val_loss": sft_eval_loss(m, val)}) if val else None
    if val:
        print(f"held-out response loss before: {sft_eval_loss(model, val):.4f}")

    t0 = time.perf_counter()

    def log(r):
        if r["step"] % max(1, args.steps // 10) == 0 or "val_loss" in r or r["step"] == args.steps:
            extra = f"  val {r['val_loss']:.4f}" if "val_loss" in r else ""
            eta = (time.perf_counter() - t0) / r["step"] * (args.steps - r["step"])
            print(f"step {r['step']:5d}/{args.steps}  loss {r['loss']:.4f}  lr {r['lr']:.2e}  "
                  f"target tokens {r['target_tokens']}/{r['tokens']}  ETA {fmt_time(eta)}{extra}", flush=True)

    sft_train(model, train, cfg, eval_fn=eval_fn, eval_every=max(1, args.steps // 4), log=log)
    os.makedirs(args.out, exist_ok=True)
    shutil.copyfile(os.path.join(args.run, TOKENIZER_FILE), os.path.join(args.out, TOKENIZER_FILE))
    path = save_checkpoint(checkpoint_dir(args.out), model, AdamW(model.params, lr=args.lr),
                           {"step": args.steps, "stage": "sft", "template": args.template, "data": args.data})
    print(f"saved {path}")
    return 0
