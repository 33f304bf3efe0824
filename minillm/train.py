"""The training loop: batches from memmapped token files, gradient accumulation, AdamW with a
warmup schedule and clipping, periodic evaluation and checkpoints, and the safety net large runs
rely on: loss-spike and NaN/Inf detection that rolls back to the last good checkpoint and skips the
offending batches (as PaLM did, Chowdhery et al. 2022, Sec. 5.1).

Determinism: the batch for data index i is drawn from np.random.default_rng([seed, i]), and the
data index is part of the checkpoint, so resuming reproduces the uninterrupted run bit for bit.
`minillm train` (register/main below) is the main job: a small Llama on CPython's own docs.
"""
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .io.tokens import read_tokens
from .model import ModelConfig, Transformer
from .optim import SCHEDULES, AdamW, clip_grad_norm, global_grad_norm
from .tokenizer.byte import ByteTokenizer


@dataclass
class TrainConfig:
    train_data: str = None            # token file (minillm.io.write_tokens)
    val_data: str = None              # token file for eval loss (None: no eval)
    out_dir: str = "runs/minillm"
    batch_size: int = 8               # sequences per micro-batch
    seq_len: int = 128                # T
    grad_accum: int = 1               # micro-batches per optimizer step
    max_steps: int = 200
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    schedule: str = "cosine"          # "cosine" | "wsd"
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0            # 0 disables clipping
    eval_interval: int = 50
    eval_batches: int = 8
    ckpt_interval: int = 50
    activation_checkpointing: bool = False
    spike_window: int = 50            # running window of good steps for the z-scores
    spike_z: float = 6.0              # a step whose loss or grad-norm z-score exceeds this is a spike
    spike_min_history: int = 20       # no spike verdicts before this many good steps
    max_rollbacks: int = 5
    seed: int = 0
    log_interval: int = 10


class TokenBatches:
    """Random windows of a token file: batch i is fully determined by (seed, i)."""

    def __init__(self, path, batch_size, seq_len, seed):
        self.tokens, self.vocab_size = read_tokens(path)
        if len(self.tokens) < seq_len + 2:
            raise ValueError(f"{path}: {len(self.tokens)} tokens, need at least seq_len + 2 = {seq_len + 2}")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed

    def batch(self, index):  # -> x (B, T) int64, y (B, T) int64 (y is x shifted by one)
        rng = np.random.default_rng([self.seed, index])
        starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch_size)
        rows = np.stack([self.tokens[s:s + self.seq_len + 1] for s in starts]).astype(np.int64)
        return rows[:, :-1], rows[:, 1:]


class SpikeDetector:
    """z-scores of loss and gradient norm against a running window of recent good steps."""

    def __init__(self, window, z, min_history):
        self.window, self.z, self.min_history = window, z, min_history
        self.losses, self.norms = [], []

    def check(self, loss, norm):
        """-> None if the step looks fine, else a reason string."""
        if not (math.isfinite(loss) and math.isfinite(norm)):
            return f"non-finite loss {loss} or grad norm {norm}"
        if len(self.losses) >= self.min_history:
            for name, x, hist in (("loss", loss, self.losses), ("grad norm", norm, self.norms)):
                mu, sd = float(np.mean(hist)), float(np.std(hist)) + 1e-8
                if (x - mu) / sd > self.z:
                    return f"{name} spike: {x:.4g} is {(x - mu) / sd:.1f} sd above the mean {mu:.4g}"
        return None

    def accept(self, loss, norm):
        self.losses = (self.losses + [loss])[-self.window:]
        self.norms = (self.norms + [norm])[-self.window:]

    def state(self):
        return {"losses": self.losses, "norms": self.norms}

    def load(self, s):
        self.losses, self.norms = list(s["losses"]), list(s["norms"])


def _fmt_time(s):
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def evaluate(model, batches, n_batches):
    """Mean loss over a fixed set of batches (indices 0..n-1 of `batches`)."""
    return float(np.mean([model.loss(*batches.batch(i)) for i in range(n_batches)]))


def train(model, tc, log=print, resume=True, fault=None):
    """Train `model` in place per TrainConfig `tc`; returns (model, history).

    history: list of dicts (step, loss, grad_norm, lr, tok_per_s, and val_loss on eval steps),
    plus events for rollbacks. If resume and out_dir has a checkpoint, training continues from it
    (the model passed in is replaced by the checkpoint's). `fault(step, grads)` is a test hook that
    may corrupt a step's gradients to exercise the rollback path."""
    if tc.schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {sorted(SCHEDULES)}, got {tc.schedule!r}")
    data = TokenBatches(tc.train_data, tc.batch_size, tc.seq_len, tc.seed)
    if data.vocab_size > model.config.vocab_size:
        raise ValueError(f"train_data: vocabulary {data.vocab_size} exceeds the model's {model.config.vocab_size}")
    val = TokenBatches(tc.val_data, tc.batch_size, tc.seq_len, tc.seed + 1) if tc.val_data else None
    opt = AdamW(model.params, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    spikes = SpikeDetector(tc.spike_window, tc.spike_z, tc.spike_min_history)
    step, data_index, rollbacks, history = 0, 0, 0, []

    def restore(path):
        nonlocal model, opt, step, data_index
        loaded, opt_step, opt_state, state = load_checkpoint(path)
        for k in model.params:  # copy in place so callers' references stay valid
            model.params[k][...] = loaded.params[k]
        opt.load_state_dict(opt_step, opt_state)
        step, data_index = state["step"], state["data_index"]
        spikes.load(state["spikes"])

    def checkpoint():
        save_checkpoint(tc.out_dir, model, opt, {"step": step, "data_index": data_index,
                                                 "spikes": spikes.state(), "train_config": dataclasses.asdict(tc)})

    last = latest_checkpoint(tc.out_dir) if resume else None
    if last:
        restore(last)
        log(f"resumed from {last} at step {step}")
    else:
        checkpoint()  # step 0: the rollback target before the first interval checkpoint
    schedule = SCHEDULES[tc.schedule]
    tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum
    t0, steps_timed = time.perf_counter(), 0
    while step < tc.max_steps:
        lr = schedule(step, tc.lr, tc.warmup_steps, tc.max_steps, min_lr=tc.min_lr)
        ts = time.perf_counter()
        loss, grads = 0.0, None
        for _ in range(tc.grad_accum):
            x, y = data.batch(data_index)
            data_index += 1
            l, g = model.loss_and_grads(x, y, checkpoint=tc.activation_checkpointing)
            loss += l / tc.grad_accum
            if grads is None:
                grads = g
            else:
                for k in grads:
                    grads[k] += g[k]
        if tc.grad_accum > 1:
            for g in grads.values():
                g *= np.float32(1.0 / tc.grad_accum)
        if fault is not None:
            fault(step, grads)
        norm = global_grad_norm(grads)
        reason = spikes.check(loss, norm)
        if reason:
            rollbacks += 1
            if rollbacks > tc.max_rollbacks:
                raise RuntimeError(f"step {step}: {reason}; gave up after {tc.max_rollbacks} rollbacks")
            bad_index = data_index
            restore(latest_checkpoint(tc.out_dir))
            data_index = bad_index  # skip every batch consumed since that checkpoint
            log(f"step {step}: {reason} -> rolled back to step {step}, skipping to batch {data_index}")
            history.append({"event": "rollback", "step": step, "reason": reason})
            continue
        if tc.grad_clip > 0:
            clip_grad_norm(grads, tc.grad_clip)
        opt.step(grads, lr=lr)
        spikes.accept(loss, norm)
        step += 1
        dt = time.perf_counter() - ts
        steps_timed += 1
        rec = {"step": step, "loss": loss, "grad_norm": norm, "lr": lr, "tok_per_s": tokens_per_step / dt}
        if val is not None and (step % tc.eval_interval == 0 or step == tc.max_steps):
            rec["val_loss"] = evaluate(model, val, tc.eval_batches)
        history.append(rec)
        if step % tc.log_interval == 0 or step == tc.max_steps or "val_loss" in rec:
            elapsed = time.perf_counter() - t0
            eta = elapsed / steps_timed * (tc.max_steps - step)
            msg = (f"step {step:5d}/{tc.max_steps} | loss {loss:.4f} | lr {lr:.2e} | gnorm {norm:.3f} | "
                   f"{rec['tok_per_s']:,.0f} tok/s | ETA {_fmt_time(eta)}")
            if "val_loss" in rec:
                msg += f" | val {rec['val_loss']:.4f}"
            log(msg)
        if step % tc.ckpt_interval == 0 or step == tc.max_steps:
            checkpoint()
    return model, history


# ---------------------------------------------------------------------------------- main job
def corpus_text():
    """The English text every CPython carries: the pydoc topic help (about 466 KB)."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def loss_curve(history, path=None, width=60, height=12):
    """Save the loss curve as a PNG when matplotlib is installed; return it as text either way."""
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if path:
        try:
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


def load_run_tokenizer(run_dir):
    """The tokenizer `minillm train` used for run_dir (BPE file, or the byte fallback)."""
    path = os.path.join(run_dir, "tokenizer.model")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir}: no tokenizer.model (was it written by `minillm train`?)")
    if ByteTokenizer.is_file(path):
        return ByteTokenizer()
    from .tokenizer import BPETokenizer
    return BPETokenizer.load(path)


def get_tokenizer(kind, text, vocab_size, run_dir, log=print):
    """A BPE vocabulary trained on `text` (cached on disk), or bytes. Saved as run_dir/tokenizer.model."""
    tok = None
    if kind == "bpe":
        try:
            from .tokenizer import cached_bpe
        except ImportError:
            log("BPE tokenizer unavailable; using the byte-level vocabulary")
        else:
            tok = cached_bpe(text, vocab_size, os.path.join(run_dir, "tokenizer_cache"))
    tok = tok or ByteTokenizer()
    tok.save(os.path.join(run_dir, "tokenizer.model"))
    return tok


def prepare_data(out_dir, tokenizer_kind, vocab_size, log=print):
    """Tokenise the corpus (90% train, 10% val) into token files; returns (train, val, tokenizer)."""
    from .io.tokens import write_tokens
    text = corpus_text()
    tok = get_tokenizer(tokenizer_kind, text, vocab_size, out_dir, log)
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
    import shutil
    if args.fresh and os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)
    train_path, val_path, tok = prepare_data(args.out, args.tokenizer, args.vocab_size)
    cfg = ModelConfig.preset(args.preset, vocab_size=tok.vocab_size, max_seq_len=max(args.seq_len, 16))
    model = Transformer(cfg, seed=args.seed)
    print(f"model: {args.preset}, {cfg.num_params():,} parameters, vocab {cfg.vocab_size}")
    tc = TrainConfig(train_data=train_path, val_data=val_path, out_dir=os.path.join(args.out, "ckpt"),
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
    print(f"checkpoint: {latest_checkpoint(tc.out_dir)}  (try: minillm generate --run {args.out} "
          f"--prompt \"The for statement\")")
    return 0
