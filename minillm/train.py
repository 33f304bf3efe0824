"""The training loop: batches from memmapped token files, gradient accumulation, AdamW with a
warmup schedule and clipping, periodic evaluation and checkpoints, and the safety net large runs
rely on: loss-spike and NaN/Inf detection that rolls back to the last good checkpoint and skips the
offending batches (as PaLM did, Chowdhery et al. 2022, Sec. 5.1).

Determinism: the batch for data index i is drawn from np.random.default_rng([seed, i]), and the
data index is part of the checkpoint, so resuming reproduces the uninterrupted run bit for bit.
`minillm train` (minillm/cli/train.py) is the main job: a small Llama on CPython's own docs
(corpus_text below).
"""
import dataclasses
import math
import time
from dataclasses import dataclass

from pydoc_data.topics import topics

import numpy as np

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .io.tokens import read_tokens
from .optim import SCHEDULES, AdamW, clip_grad_norm, global_grad_norm


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


def _restore(path, model, opt, spikes):
    """Load checkpoint `path` into model, optimizer and spike detector in place (callers' references
    to model.params stay valid); -> (step, data_index) it was saved at."""
    loaded, opt_step, opt_state, state = load_checkpoint(path)
    for k in model.params:
        model.params[k][...] = loaded.params[k]
    opt.load_state_dict(opt_step, opt_state)
    spikes.load(state["spikes"])
    return state["step"], state["data_index"]


def _save(tc, model, opt, spikes, step, data_index):
    save_checkpoint(tc.out_dir, model, opt, {"step": step, "data_index": data_index,
                                             "spikes": spikes.state(), "train_config": dataclasses.asdict(tc)})


def _accumulated_grads(model, data, data_index, tc):
    """Mean loss and gradients over tc.grad_accum micro-batches from data index `data_index` on."""
    loss, grads = 0.0, None
    for i in range(tc.grad_accum):
        x, y = data.batch(data_index + i)
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
    return loss, grads


def _progress_line(tc, rec, elapsed, steps_timed):
    eta = elapsed / steps_timed * (tc.max_steps - rec["step"])
    msg = (f"step {rec['step']:5d}/{tc.max_steps} | loss {rec['loss']:.4f} | lr {rec['lr']:.2e} | "
           f"gnorm {rec['grad_norm']:.3f} | {rec['tok_per_s']:,.0f} tok/s | ETA {_fmt_time(eta)}")
    if "val_loss" in rec:
        msg += f" | val {rec['val_loss']:.4f}"
    return msg


def _check_data(tc, model):
    """-> (train batches, validation batches or None), after checking the vocabularies fit."""
    if tc.schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {sorted(SCHEDULES)}, got {tc.schedule!r}")
    data = TokenBatches(tc.train_data, tc.batch_size, tc.seq_len, tc.seed)
    if data.vocab_size > model.config.vocab_size:
        raise ValueError(f"train_data: vocabulary {data.vocab_size} exceeds the model's {model.config.vocab_size}")
    val = TokenBatches(tc.val_data, tc.batch_size, tc.seq_len, tc.seed + 1) if tc.val_data else None
    return data, val


def train(model, tc, log=print, resume=True, fault=None):
    """Train `model` in place per TrainConfig `tc`; returns (model, history).

    history: list of dicts (step, loss, grad_norm, lr, tok_per_s, and val_loss on eval steps),
    plus events for rollbacks. If resume and out_dir has a checkpoint, training continues from it
    (its weights are copied into the model passed in). `fault(step, grads)` is a test hook that
    may corrupt a step's gradients to exercise the rollback path."""
    data, val = _check_data(tc, model)
    opt = AdamW(model.params, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    spikes = SpikeDetector(tc.spike_window, tc.spike_z, tc.spike_min_history)
    step, data_index, rollbacks, history = 0, 0, 0, []
    last = latest_checkpoint(tc.out_dir) if resume else None
    if last:
        step, data_index = _restore(last, model, opt, spikes)
        log(f"resumed from {last} at step {step}")
    else:
        _save(tc, model, opt, spikes, step, data_index)  # step 0: the rollback target before the first interval
    tokens_per_step = tc.batch_size * tc.seq_len * tc.grad_accum
    t0, steps_timed = time.perf_counter(), 0
    while step < tc.max_steps:
        lr = SCHEDULES[tc.schedule](step, tc.lr, tc.warmup_steps, tc.max_steps, min_lr=tc.min_lr)
        ts = time.perf_counter()
        loss, grads = _accumulated_grads(model, data, data_index, tc)
        data_index += tc.grad_accum
        if fault is not None:
            fault(step, grads)
        norm = global_grad_norm(grads)
        reason = spikes.check(loss, norm)
        if reason:
            rollbacks += 1
            if rollbacks > tc.max_rollbacks:
                raise RuntimeError(f"step {step}: {reason}; gave up after {tc.max_rollbacks} rollbacks")
            step, _ = _restore(latest_checkpoint(tc.out_dir), model, opt, spikes)
            # data_index stays: every batch consumed since that checkpoint is skipped
            log(f"step {step}: {reason} -> rolled back to step {step}, skipping to batch {data_index}")
            history.append({"event": "rollback", "step": step, "reason": reason})
            continue
        if tc.grad_clip > 0:
            clip_grad_norm(grads, tc.grad_clip)
        opt.step(grads, lr=lr)
        spikes.accept(loss, norm)
        step += 1
        steps_timed += 1
        rec = {"step": step, "loss": loss, "grad_norm": norm, "lr": lr,
               "tok_per_s": tokens_per_step / (time.perf_counter() - ts)}
        if val is not None and (step % tc.eval_interval == 0 or step == tc.max_steps):
            rec["val_loss"] = evaluate(model, val, tc.eval_batches)
        history.append(rec)
        if step % tc.log_interval == 0 or step == tc.max_steps or "val_loss" in rec:
            log(_progress_line(tc, rec, time.perf_counter() - t0, steps_timed))
        if step % tc.ckpt_interval == 0 or step == tc.max_steps:
            _save(tc, model, opt, spikes, step, data_index)
    return model, history


# ---------------------------------------------------------------------------------- main job
def corpus_text():
    """The English text every CPython carries: the pydoc topic help (about 466 KB)."""
    return "\n\n".join(topics[k] for k in sorted(topics))
