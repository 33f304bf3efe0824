"""The training loop: batches from memmapped token files (one, or a weighted mixture: batches.py),
gradient accumulation, AdamW with a warmup schedule and clipping, periodic evaluation and
checkpoints, and the safety net large runs rely on: loss-spike and NaN/Inf detection that rolls back
to the last good checkpoint and skips the offending batches (as PaLM did, Chowdhery et al. 2022,
Sec. 5.1). The same loop runs data-parallel under mpirun (distributed.py: each rank its rows of
every batch, bucketed gradient all-reduce, ZeRO-1 AdamW) and alone without MPI.

Determinism: the batch for data index i is drawn from np.random.default_rng([seed, i]), and the
data index is part of the checkpoint, so resuming reproduces the uninterrupted run bit for bit.
`minillm train` (register/main below) is the main job: a small Llama on CPython's own docs.
"""
import dataclasses
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np

from .batches import MixtureBatches, parse_data_spec
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data.sources import check_source, find_tokenizer, format_mixture, read_texts, tokenize_sources
from .distributed import DEFAULT_BUCKET_BYTES, DataParallel, communicator
from .io.tokens import read_tokens
from .metrics import MetricsLog
from .model import ModelConfig, Transformer
from .optim import SCHEDULES, clip_coefficient, default_param_groups
from .tokenizer.byte import ByteTokenizer


@dataclass
class TrainConfig:
    train_data: str = None            # token file (minillm.io.write_tokens), or ["PATH:WEIGHT", ...] mixture
    val_data: str = None              # token file for eval loss (None: the held-out tails, or no eval)
    val_fraction: float = 0.0         # hold out this tail of every train_data file for eval
    metrics_path: str = None          # metrics.jsonl (None: not written)
    bucket_bytes: int = DEFAULT_BUCKET_BYTES  # gradient all-reduce bucket size (data parallel)
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


def evaluate(model, batches, n_batches, dp=None):
    """Mean loss over a fixed set of batches (indices 0..n-1 of `batches`); with a DataParallel `dp`
    each rank scores its rows and the ranks agree on the mean."""
    rows = dp.rows(batches.batch_size) if dp is not None else slice(None)
    local = float(np.mean([model.loss(*(a[rows] for a in batches.batch(i))) for i in range(n_batches)]))
    return dp.agree(local)[0] if dp is not None else local


@dataclass
class Progress:
    """Where a run is: optimizer steps done, batches consumed, rollbacks so far."""
    step: int = 0
    data_index: int = 0
    rollbacks: int = 0


def _restore(path, model, dp, spikes, prog):
    loaded, opt_step, opt_state, state = load_checkpoint(path)
    for k in model.params:  # copy in place so callers' references stay valid
        model.params[k][...] = loaded.params[k]
    dp.opt.load_state_dict(opt_step, opt_state)
    prog.step, prog.data_index = state["step"], state["data_index"]
    spikes.load(state["spikes"])


def _checkpoint(tc, model, dp, spikes, prog):
    dp.save(tc.out_dir, model, {"step": prog.step, "data_index": prog.data_index, "spikes": spikes.state(),
                                "train_config": dataclasses.asdict(tc)}, save_checkpoint)


def _open_batches(tc, model):
    """The training mixture and the eval batches (a separate val file, or the held-out tails)."""
    data = MixtureBatches(tc.train_data, tc.batch_size, tc.seq_len, tc.seed, "train", tc.val_fraction)
    if data.vocab_size > model.config.vocab_size:
        raise ValueError(f"train_data: vocabulary {data.vocab_size} exceeds the model's {model.config.vocab_size}")
    val = None
    if tc.val_data:
        val = MixtureBatches(tc.val_data, tc.batch_size, tc.seq_len, tc.seed + 1)
    elif tc.val_fraction:
        val = MixtureBatches(tc.train_data, tc.batch_size, tc.seq_len, tc.seed + 1, "val", tc.val_fraction)
    return data, val


def _rollback(tc, model, dp, spikes, prog, reason, log):
    """Spike or NaN: back to the last checkpoint, skipping every batch consumed since it."""
    prog.rollbacks += 1
    if prog.rollbacks > tc.max_rollbacks:
        raise RuntimeError(f"step {prog.step}: {reason}; gave up after {tc.max_rollbacks} rollbacks")
    bad_index = prog.data_index
    _restore(dp.comm.bcast(latest_checkpoint(tc.out_dir)), model, dp, spikes, prog)
    prog.data_index = bad_index
    log(f"step {prog.step}: {reason} -> rolled back to step {prog.step}, skipping to batch {bad_index}")
    return {"event": "rollback", "step": prog.step, "reason": reason}


def train(model, tc, log=print, resume=True, fault=None, comm=None):
    """Train `model` in place per TrainConfig `tc`; returns (model, history).

    history: list of dicts (step, loss, grad_norm, lr, tokens, tok_per_s, comm_s, and val_loss on
    eval steps), plus events for rollbacks; tc.metrics_path, when set, receives the same as JSON
    lines. If resume and out_dir has a checkpoint, training continues from it (its parameters are
    copied into the model passed in). comm: the communicator (default: MPI when started by mpirun,
    else one process); every rank runs this function, rank 0 logs and writes. model.params become
    views of one flat vector (distributed.FlatParams). `fault(step, grads)` is a test hook that may
    corrupt a step's gradients to exercise the rollback path."""
    if tc.schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {sorted(SCHEDULES)}, got {tc.schedule!r}")
    comm = communicator() if comm is None else comm
    log = log if comm.rank == 0 else (lambda s: None)
    data, val = _open_batches(tc, model)
    dp = DataParallel(model, comm, default_param_groups(model.params, tc.weight_decay), tc.lr, tc.betas,
                      tc.bucket_bytes)
    dp.rows(tc.batch_size)  # fails now, not mid-run, if the batch does not split over the ranks
    spikes = SpikeDetector(tc.spike_window, tc.spike_z, tc.spike_min_history)
    prog, history = Progress(), []
    last = dp.comm.bcast(latest_checkpoint(tc.out_dir) if resume and comm.rank == 0 else None)
    if last:
        _restore(last, model, dp, spikes, prog)
        log(f"resumed from {last} at step {prog.step}")
    else:
        _checkpoint(tc, model, dp, spikes, prog)  # step 0: the rollback target before the first interval
    metrics = MetricsLog(tc.metrics_path if comm.rank == 0 else None, resume_step=prog.step)
    schedule = SCHEDULES[tc.schedule]
    tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum
    t0, steps_timed = time.perf_counter(), 0
    while prog.step < tc.max_steps:
        step = prog.step
        lr = schedule(step, tc.lr, tc.warmup_steps, tc.max_steps, min_lr=tc.min_lr)
        ts = time.perf_counter()
        batches = [data.batch(prog.data_index + i) for i in range(tc.grad_accum)]
        prog.data_index += tc.grad_accum
        local_loss = dp.loss_and_grads(model, batches, checkpoint=tc.activation_checkpointing)
        if fault is not None:
            fault(step, dp.grads)
        loss, norm = dp.loss_and_norm(local_loss)
        reason = spikes.check(loss, norm)   # the same numbers on every rank: the same verdict
        if reason:
            history.append(_rollback(tc, model, dp, spikes, prog, reason, log))
            metrics.write(history[-1])
            continue
        if tc.grad_clip > 0 and clip_coefficient(norm, tc.grad_clip) < 1.0:
            dp.scale_grads(clip_coefficient(norm, tc.grad_clip))
        dp.step(lr)
        spikes.accept(loss, norm)
        prog.step = step = step + 1
        dt = time.perf_counter() - ts
        steps_timed += 1
        rec = {"step": step, "loss": loss, "grad_norm": norm, "lr": lr, "tokens": step * tokens_per_step,
               "tok_per_s": tokens_per_step / dt, "comm_s": dp.clock.take()}
        metrics.write(rec)
        if val is not None and (step % tc.eval_interval == 0 or step == tc.max_steps):
            rec["val_loss"] = evaluate(model, val, tc.eval_batches, dp)
            metrics.write({"step": step, "eval_loss": rec["val_loss"]})
        history.append(rec)
        if step % tc.log_interval == 0 or step == tc.max_steps or "val_loss" in rec:
            _log_step(log, rec, tc.max_steps, (time.perf_counter() - t0) / steps_timed)
        if step % tc.ckpt_interval == 0 or step == tc.max_steps:
            _checkpoint(tc, model, dp, spikes, prog)
    metrics.close()
    return model, history


def _log_step(log, rec, max_steps, sec_per_step):
    msg = (f"step {rec['step']:5d}/{max_steps} | loss {rec['loss']:.4f} | lr {rec['lr']:.2e} | "
           f"gnorm {rec['grad_norm']:.3f} | {rec['tok_per_s']:,.0f} tok/s | "
           f"ETA {_fmt_time(sec_per_step * (max_steps - rec['step']))}")
    if "val_loss" in rec:
        msg += f" | val {rec['val_loss']:.4f}"
    log(msg)


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
            shutil.copyfile(found, os.path.join(out_dir, "tokenizer.model"))
        elif vocab <= ByteTokenizer.vocab_size:
            ByteTokenizer().save(os.path.join(out_dir, "tokenizer.model"))
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
    p.add_argument("--out", default="runs/minillm", help="output folder (checkpoints, data, metrics.jsonl)")
    p.add_argument("--data", action="append", metavar="PATH[:WEIGHT]",
                   help="text file, folder of .txt/.jsonl(.gz), or token file; repeat for a mixture "
                        "sampled by weight (default: CPython's pydoc text)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="tail of every --data source held out for eval_loss")
    p.add_argument("--preset", default="llama-small", help="model preset (minillm.model.PRESETS)")
    p.add_argument("--tokenizer", default="bpe", choices=["bpe", "byte"], help="vocabulary")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=450)
    p.add_argument("--batch-size", type=int, default=16, help="global batch: split over the MPI ranks")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--eval-interval", type=int, default=None, help="steps between evals (default steps/6)")
    p.add_argument("--ckpt-interval", type=int, default=None, help="steps between checkpoints (default steps/6)")
    p.add_argument("--bucket-mb", type=float, default=DEFAULT_BUCKET_BYTES / 2**20,
                   help="gradient all-reduce bucket size in MiB (data parallel)")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in --out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=main)


def main(args):
    """Train a small Llama-flavoured model on --data (default: CPython's pydoc text), writing
    checkpoints and metrics.jsonl to --out; resumes from the newest checkpoint unless --fresh.
    `mpirun -n N minillm train ...` trains data-parallel on N ranks (pip install minillm[dist])."""
    comm = communicator()
    try:
        return _main(args, comm)
    except BaseException:
        if comm.size > 1:  # one rank failing must end the whole job, not leave the others waiting
            traceback.print_exc()
            sys.stderr.flush()
            comm.abort(1)
        raise


def _prepare_run(args):
    """Rank 0's part: the output folder and token files. -> (train_data, val_data, val_fraction, vocab)."""
    if args.fresh and os.path.isdir(args.out):
        shutil.rmtree(args.out)
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
    every = max(1, args.steps // 6)
    tc = TrainConfig(train_data=train_data, val_data=val_data, val_fraction=val_fraction,
                     out_dir=os.path.join(args.out, "ckpt"), metrics_path=os.path.join(args.out, "metrics.jsonl"),
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
    if any("loss" in h for h in history):
        print(loss_curve(history, png))
    if os.path.exists(png):
        print(f"loss curve: {png}")
    print(f"metrics: {tc.metrics_path}")
    print(f"checkpoint: {latest_checkpoint(tc.out_dir)}  (try: minillm generate --run {args.out} "
          f"--prompt \"The for statement\")")
