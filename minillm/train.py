"""The training loop: batches from memmapped token files (one, or a weighted mixture: batches.py),
gradient accumulation, AdamW with a warmup schedule and clipping, periodic evaluation and
checkpoints, and the safety net large runs rely on: loss-spike and NaN/Inf detection that rolls back
to the last good checkpoint and skips the offending batches (as PaLM did, Chowdhery et al. 2022,
Sec. 5.1). The same loop runs data-parallel under mpirun (distributed.py: each rank its rows of
every batch, bucketed gradient all-reduce, ZeRO-1 AdamW) and alone without MPI.

Determinism: the batch for data index i is drawn from np.random.default_rng([seed, i]), and the
data index is part of the checkpoint, so resuming reproduces the uninterrupted run bit for bit.
`minillm train` (minillm/cli/train.py) is the main job: a small Llama on your data or CPython's own
docs (corpus_text below).
"""
import dataclasses
import math
import time
from dataclasses import dataclass

from pydoc_data.topics import topics

import numpy as np

from .batches import MixtureBatches
from .checkpoint import clean_leftovers, latest_checkpoint, load_checkpoint, save_checkpoint
from .distributed import DEFAULT_BUCKET_BYTES, DataParallel, communicator
from .kernels.memory import keep_freed_memory
from .metrics import MetricsLog
from .optim import SCHEDULES, clip_coefficient, default_param_groups


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
    max_rollbacks: int = 5            # rollbacks in a row (without rollback_reset healthy steps between)
    rollback_reset: int = 20          # this many healthy steps after a rollback reset its counter
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


def fmt_time(s):
    """Seconds as 4m05s, or 1h02m from an hour on."""
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
    """Where a run is: optimizer steps done, batches consumed, rollbacks since the run was last
    healthy for tc.rollback_reset steps in a row, and those healthy steps."""
    step: int = 0
    data_index: int = 0
    rollbacks: int = 0
    healthy: int = 0


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
    prog.healthy = 0
    bad_step, bad_index = prog.step + 1, prog.data_index
    if prog.rollbacks > tc.max_rollbacks:
        raise RuntimeError(f"step {bad_step}: {reason}; gave up after {tc.max_rollbacks} rollbacks in a row "
                           f"(fewer than {tc.rollback_reset} healthy steps between them)")
    _restore(dp.comm.bcast(latest_checkpoint(tc.out_dir)), model, dp, spikes, prog)
    prog.data_index = bad_index
    redo = f"steps {prog.step + 1}-{bad_step}" if bad_step > prog.step + 1 else f"step {bad_step}"
    log(f"step {bad_step} not taken: {reason}. Rolled back to the checkpoint of step {prog.step}; "
        f"{redo} will run again on fresh batches (from batch {bad_index}) "
        f"[rollback {prog.rollbacks} of at most {tc.max_rollbacks} in a row]")
    return {"event": "rollback", "step": prog.step, "failed_step": bad_step, "reason": reason}


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
    keep_freed_memory()    # each step's large temporaries reuse the last step's pages (kernels/memory.py)
    data, val = _open_batches(tc, model)
    dp = DataParallel(model, comm, default_param_groups(model.params, tc.weight_decay), tc.lr, tc.betas,
                      tc.bucket_bytes)
    dp.rows(tc.batch_size)  # fails now, not mid-run, if the batch does not split over the ranks
    spikes = SpikeDetector(tc.spike_window, tc.spike_z, tc.spike_min_history)
    prog, history = Progress(), []
    if comm.rank == 0:
        clean_leftovers(tc.out_dir)         # what a save killed midway left: removed at once
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
        prog.healthy += 1
        if prog.healthy >= tc.rollback_reset:   # progress again: earlier rollbacks no longer count
            prog.rollbacks = 0
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
           f"ETA {fmt_time(sec_per_step * (max_steps - rec['step']))}")
    if "val_loss" in rec:
        msg += f" | val {rec['val_loss']:.4f}"
    log(msg)


# ---------------------------------------------------------------------------------- main job
def corpus_text():
    """The English text every CPython carries: the pydoc topic help (about 466 KB)."""
    return "\n\n".join(topics[k] for k in sorted(topics))
