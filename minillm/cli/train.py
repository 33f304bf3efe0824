"""`minillm train`: tokenise --data (text files, folders of .txt/.jsonl(.gz), or token files; a
weighted mixture) or CPython's pydoc text (minillm.train.corpus_text) with a BPE trained on it (or
bytes), train a small Llama-flavoured model with minillm.train.train -- on one process, or
data-parallel under `mpirun -n N` -- and leave a run folder (minillm.run_folder) with checkpoints
and metrics.jsonl that generate/chat/quantize/sft/rag load."""
import os
import shutil
import sys
import traceback

import numpy as np

from ..batches import MixtureBatches, parse_data_spec
from ..data.sources import check_source, find_tokenizer, format_mixture, read_texts, tokenize_sources
from ..distributed import DEFAULT_BUCKET_BYTES, communicator
from ..io.tokens import read_tokens, write_tokens
from ..model import PRESETS, ModelConfig, Transformer
from ..run_folder import (checkpoint_dir, clear_run, latest_run_checkpoint, metrics_path, read_run_metrics,
                          tokenizer_path)
from ..tokenizer import ByteTokenizer, cached_bpe
from ..train import TrainConfig, corpus_text, train
from .args import fraction, output_folder, positive_float, positive_int, seed


def loss_curve(history, path=None, width=60, height=12):
    """Save the loss curve as a PNG when matplotlib is installed; return it as text either way.
    history: train() records or metrics.jsonl's (val loss as "val_loss" or "eval_loss"); the axis
    is labelled with the steps it really holds (a resumed run's whole history, or a part)."""
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h.get("val_loss", h.get("eval_loss"))) for h in history
           if "val_loss" in h or "eval_loss" in h]
    if not pts:
        raise ValueError("history: no training steps to plot")
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
    rows.append(f"         step {pts[0][0]} .. {pts[-1][0]}")
    return "\n".join(rows)


def get_tokenizer(kind, text, vocab_size, run_dir, log=print):
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


def prepare_user_data(specs, out_dir, tokenizer_kind, vocab_size, log=print):
    """--data sources -> (["token file:weight", ...], vocabulary size). Checks every source first
    (missing or empty files fail before any tokenizer training or model step); text is tokenized
    with a vocabulary trained on it (or bytes) into out_dir/data/; token files are used in place
    and their tokenizer, when one lies beside them, becomes the run's tokenizer.model."""
    specs = [parse_data_spec(s) for s in specs]
    kinds = [check_source(s.path) for s in specs]
    weights = [s.weight for s in specs]
    if "tokens" in kinds and "text" in kinds:
        raise ValueError("--data: cannot mix token files with text sources (text is tokenized with this "
                         "run's vocabulary, token files carry their own); tokenize the text first")
    if kinds[0] == "tokens":
        paths = [s.path for s in specs]
        vocab = max(read_tokens(p)[1] for p in paths)
        found = find_tokenizer(paths[0])
        if found:
            shutil.copyfile(found, tokenizer_path(out_dir))
        elif vocab <= ByteTokenizer.vocab_size:
            ByteTokenizer().save(tokenizer_path(out_dir))
        else:
            log(f"no tokenizer beside {paths[0]}: `minillm generate --run` will need one as tokenizer.model")
        log(f"data: {len(paths)} token file(s), vocabulary {vocab}")
        return format_mixture(paths, weights), vocab
    docs = [read_texts(s.path) for s in specs]
    tok = get_tokenizer(tokenizer_kind, "\n\n".join(d for texts in docs for d in texts), vocab_size, out_dir, log)
    paths = tokenize_sources(specs, docs, tok, os.path.join(out_dir, "data"))
    for spec, path in zip(specs, paths):
        log(f"data: {spec.path} (weight {spec.weight:g}) -> {len(read_tokens(path)[0]):,} tokens in {path}")
    return format_mixture(paths, weights), tok.vocab_size


def register(subparsers):
    p = subparsers.add_parser("train", help="train a small Llama-style model on your data (default: "
                              "CPython's docs), on one process or under mpirun", description=main.__doc__)
    p.add_argument("--out", default="runs/minillm", type=output_folder, help="output folder (checkpoints, data, metrics.jsonl)")
    p.add_argument("--data", action="append", metavar="PATH[:WEIGHT]",
                   help="text file, folder of .txt/.jsonl(.gz), or token file; repeat for a mixture "
                        "sampled by weight (default: CPython's pydoc text)")
    p.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="tail of every --data source held out for eval_loss")
    p.add_argument("--preset", default="llama-small", choices=sorted(PRESETS), help="model shape")
    p.add_argument("--tokenizer", default="bpe", choices=["bpe", "byte"], help="vocabulary")
    p.add_argument("--vocab-size", type=positive_int, default=2048, help="BPE vocabulary (>= 256)")
    p.add_argument("--steps", type=positive_int, default=450, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=16, help="global batch: split over the MPI ranks")
    p.add_argument("--seq-len", type=positive_int, default=128, help="tokens per sequence")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per step")
    p.add_argument("--eval-interval", type=positive_int, default=None, help="steps between evals (default: steps/6, at least 10)")
    p.add_argument("--ckpt-interval", type=positive_int, default=None, help="steps between checkpoints (default: steps/6, at least 10)")
    p.add_argument("--bucket-mb", type=positive_float, default=DEFAULT_BUCKET_BYTES / 2**20,
                   help="gradient all-reduce bucket size in MiB (data parallel)")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--fresh", action="store_true", help="start over: delete what an earlier run wrote in --out "
                   "(refused if --out holds other files)")
    p.add_argument("--seed", type=seed, default=0, help="random seed")
    p.set_defaults(func=main)


def main(args):
    """Train a small Llama-flavoured model on --data (default: CPython's pydoc text), writing
    checkpoints and metrics.jsonl to --out; resumes from the newest checkpoint unless --fresh.
    `mpirun -n N minillm train ...` trains data-parallel on N ranks (pip install minillm[dist])."""
    comm = communicator()
    try:
        return _main(args, comm)
    except KeyboardInterrupt:
        if comm.size > 1:
            comm.abort(130)
        raise KeyboardInterrupt(_interrupted(args.out)) from None
    except BaseException:
        if comm.size > 1:  # one rank failing must end the whole job, not leave the others waiting
            traceback.print_exc()
            sys.stderr.flush()
            comm.abort(1)
        raise


def _interrupted(run_dir):
    """What Ctrl-C leaves: the last step finished and the checkpoint a re-run resumes from."""
    steps = [r["step"] for r in read_run_metrics(run_dir) if "loss" in r]
    ckpt = latest_run_checkpoint(run_dir) if os.path.isdir(run_dir) else None
    if ckpt is None:
        return "interrupted before the first checkpoint; re-run the same command to start again"
    at = f"interrupted at step {steps[-1]}" if steps else "interrupted"
    return (f"{at}; re-run the same command to resume from the checkpoint of step "
            f"{int(os.path.basename(ckpt).split('_')[1])} ({ckpt})")


def _prepare_run(args):
    """Rank 0's part: the output folder and token files. -> (train_data, val_data, val_fraction, vocab)."""
    if args.tokenizer == "bpe" and args.vocab_size <= ByteTokenizer.vocab_size:
        raise ValueError(f"--vocab-size: a BPE vocabulary holds the {ByteTokenizer.vocab_size} bytes and "
                         f"some merges: expected > {ByteTokenizer.vocab_size}, got {args.vocab_size}")
    if args.fresh:
        clear_run(args.out)
    elif os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out: {args.out} is a file, expected a run folder")
    os.makedirs(args.out, exist_ok=True)
    if args.data:
        train_data, vocab = prepare_user_data(args.data, args.out, args.tokenizer, args.vocab_size)
        return train_data, None, args.val_fraction, vocab
    train_path, val_path, tok = prepare_data(args.out, args.tokenizer, args.vocab_size)
    return train_path, val_path, 0.0, tok.vocab_size


def _main(args, comm):
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    prepared = None
    if comm.rank == 0:
        try:
            prepared = _prepare_run(args)
        except (ValueError, FileNotFoundError) as e:
            prepared = str(e)
    prepared = comm.bcast(prepared)
    if isinstance(prepared, str):                 # a bad --data: every rank stops before training
        if comm.rank == 0:
            sys.stderr.write(f"minillm train: error: {prepared}\n")
        return 2
    train_data, val_data, val_fraction, vocab = prepared
    cfg = ModelConfig.preset(args.preset, vocab_size=vocab, max_seq_len=max(args.seq_len, 16))
    model = Transformer(cfg, seed=args.seed)
    say(f"model: {args.preset}, {cfg.num_params():,} parameters, vocab {cfg.vocab_size}; "
        f"{comm.size} rank(s), {args.batch_size // max(comm.size, 1)} of {args.batch_size} sequences each")
    every = max(10, args.steps // 6)     # a short run evaluates and checkpoints at its end, not every step
    tc = TrainConfig(train_data=train_data, val_data=val_data, val_fraction=val_fraction,
                     out_dir=checkpoint_dir(args.out), metrics_path=metrics_path(args.out),
                     batch_size=args.batch_size, seq_len=args.seq_len, max_steps=args.steps, lr=args.lr,
                     min_lr=args.lr / 10, warmup_steps=max(1, args.steps // 20), grad_accum=args.grad_accum,
                     eval_interval=args.eval_interval or every, ckpt_interval=args.ckpt_interval or every,
                     bucket_bytes=max(1, int(args.bucket_mb * 2**20)),
                     activation_checkpointing=args.activation_checkpointing, seed=args.seed)
    if comm.rank == 0:
        sample = MixtureBatches(train_data, tc.batch_size // comm.size, tc.seq_len, tc.seed, "train",
                                val_fraction).batch(0)[0]
        full, ckpt = model.activation_bytes(sample), model.activation_bytes(sample, checkpoint=True)
        say(f"activation memory per micro-batch and rank: {full / 2**20:.1f} MiB stored, "
            f"{ckpt / 2**20:.1f} MiB with activation checkpointing ({1 - ckpt / full:.0%} saved)")
    model, history = train(model, tc, log=lambda s: print(s, flush=True), comm=comm)
    if comm.rank == 0:
        _report(args, tc, history)
    return 0


def _report(args, tc, history):
    png = os.path.join(args.out, "loss.png")
    if not any("loss" in h for h in history):
        print(f"{args.out} has already trained {args.steps} steps: nothing to do (raise --steps to train "
              f"further, or --fresh to start over)")
    else:   # the whole run from metrics.jsonl, so a resumed run's curve starts at step 1 too
        whole = read_run_metrics(args.out)
        print(loss_curve(whole if any("loss" in h for h in whole) else history, png))
    if os.path.exists(png):
        print(f"loss curve: {png}")
    elif any("loss" in h for h in history):
        print("loss curve as a PNG: pip install minillm[plot] (matplotlib), then re-run")
    print(f"metrics: {tc.metrics_path}")
    print(f"checkpoint: {latest_run_checkpoint(args.out)}  (try: minillm generate --run {args.out} "
          f"--prompt \"The for statement\")")
