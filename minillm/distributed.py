"""Data-parallel training over MPI: bucketed gradient all-reduce in backward order, and AdamW with
its moments sharded across ranks (ZeRO stage 1, Rajbhandari et al. 2020, Sec. 5.1).

`mpirun -n N minillm train ...` starts N copies of the same program. Every rank holds the whole
model; each one runs forward and backward on its 1/N share of the rows of every global batch, so
the batch size the user gives stays the global batch, as in llm.c's train_gpt2.cu. Then:

1. Gradients are summed across ranks (all-reduce) in *buckets* of about `bucket_bytes`, launched
   as soon as backward has produced every gradient in the bucket. Backward runs from the output
   head down to the embeddings, so the flat gradient buffer is laid out in that order and the
   last layer's bucket travels while the earlier layers are still differentiating. The calls are
   non-blocking (MPI_Iallreduce); MPI only advances them inside MPI calls, so each gradient
   arrival also polls the pending requests (MPI_Testall).
2. Each rank owns one contiguous 1/N slice of the flat parameter vector: AdamW's moments m, v
   exist only for that slice (the ZeRO-1 saving: 8 bytes per parameter become 8/N), the rank
   updates only its slice, and an all-gather brings every rank the updated parameters.
3. Decisions (loss, gradient norm, spike rollback, NaN skipping, clipping) use scalars summed in
   rank order on rank 0 and broadcast, so every rank decides the same thing bit for bit; and since
   each parameter is written by exactly one rank and then broadcast by the all-gather, the replicas
   cannot drift apart.

Reduction order (what "equivalent to one rank" means): rank r's gradient is d(mean loss over its
B/N rows)/dθ, summed over micro-batches in order and scaled by 1/grad_accum; MPI sums the N
partial gradients (for N = 2 the sum a + b is the same on both ranks and independent of the
algorithm, since float addition is commutative); the sum is then scaled by 1/N. One rank computes
the same mean with one BLAS reduction over all B rows, so results agree to float32 summation-order
error (about 1e-7 relative per step), not bit for bit.

The same code runs in one process without MPI: SingleProcess is the trivial communicator.
"""
import os
import time

import numpy as np

from . import kernels

# launchers set one of these in every rank's environment: Open MPI; MPICH and Intel MPI (Hydra)
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
DEFAULT_BUCKET_BYTES = 4 << 20       # 4 MiB: a few buckets for the small presets, as DDP's 25 MB is for GPUs


def launched_world_size():
    """The number of ranks an MPI launcher started, or None when not started by mpirun/mpiexec."""
    for var in _SIZE_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


class SingleProcess:
    """The communicator of a run without MPI: one rank, and every collective is the identity."""
    rank, size = 0, 1

    def iallreduce_sum(self, buf):
        return None

    def test(self, requests):
        pass

    def waitall(self, requests):
        pass

    def allgather(self, flat, bounds):
        pass

    def gather(self, shard, flat, bounds):
        flat[bounds[0][0]:bounds[0][1]] = shard

    def bcast(self, obj):
        return obj

    def gather_objects(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, code=1):
        pass


class MPICommunicator:
    """mpi4py's COMM_WORLD behind the same small interface as SingleProcess."""

    def __init__(self, comm, MPI):
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def iallreduce_sum(self, buf):  # buf (n,) float32, summed in place across ranks
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def test(self, requests):
        if requests:
            self.MPI.Request.Testall(requests)   # lets MPI progress the pending all-reduces

    def waitall(self, requests):
        if requests:
            self.MPI.Request.Waitall(requests)

    def _vector(self, flat, bounds):
        counts = [hi - lo for lo, hi in bounds]
        return [flat, counts, [lo for lo, _ in bounds], self.MPI.FLOAT]

    def allgather(self, flat, bounds):  # flat (P,): each rank's bounds slice -> every rank
        self.comm.Allgatherv(self.MPI.IN_PLACE, self._vector(flat, bounds))

    def gather(self, shard, flat, bounds):  # every rank's shard -> flat on rank 0
        self.comm.Gatherv(shard, self._vector(flat, bounds) if self.rank == 0 else None, root=0)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def gather_objects(self, obj):
        return self.comm.gather(obj, root=0)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        self.comm.Abort(code)


def communicator():
    """MPICommunicator when this process was started by an MPI launcher, else SingleProcess."""
    size = launched_world_size()
    if size is None:
        return SingleProcess()
    try:
        # optional dependency (minillm[dist]); importing it initialises MPI, hence only under a launcher
        from mpi4py import MPI
    except ImportError:
        if size > 1:
            raise RuntimeError(f"started by mpirun with {size} ranks, but mpi4py is not installed: "
                               "pip install minillm[dist]") from None
        return SingleProcess()
    return MPICommunicator(MPI.COMM_WORLD, MPI)


def sum_in_rank_order(comm, values):
    """Sum a list of floats over ranks in rank order (float64) on rank 0 and broadcast the result:
    every rank gets bit-identical numbers, whatever reduction algorithm MPI would have chosen."""
    parts = comm.gather_objects([float(v) for v in values])
    total = None
    if comm.rank == 0:
        total = [float(np.sum(col, dtype=np.float64)) for col in zip(*parts)]
    return comm.bcast(total)


def shard_bounds(n, size):
    """[(lo, hi)] of `size` contiguous, nearly equal slices of range(n)."""
    edges = [n * r // size for r in range(size + 1)]
    return list(zip(edges[:-1], edges[1:]))


class FlatParams:
    """All parameters in one float32 vector laid out in the order backward produces their gradients
    (the reverse of the model's parameter order: output head first, token embedding last).
    model.params entries become views into it, so the all-gather updates the model in place."""

    def __init__(self, params):
        self.names = list(reversed(list(params)))                      # backward order
        self.shapes = {n: params[n].shape for n in self.names}
        sizes = [int(np.prod(self.shapes[n])) for n in self.names]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.offset = {n: (int(starts[i]), int(starts[i + 1])) for i, n in enumerate(self.names)}
        self.numel = int(starts[-1])
        self.data = np.empty(self.numel, dtype=np.float32)            # (P,)
        for n in self.names:
            self.view(self.data, n)[...] = params[n]
        for n in list(params):
            params[n] = self.view(self.data, n)

    def view(self, flat, name):  # flat (P,) -> the parameter's slice, shaped like it
        lo, hi = self.offset[name]
        return flat[lo:hi].reshape(self.shapes[name])

    def pieces(self, lo, hi):
        """[(name, a, b)]: parameter `name`'s flat elements a..b lie in [lo, hi)."""
        out = []
        for n in self.names:
            a, b = self.offset[n]
            if a < hi and b > lo:
                out.append((n, max(a, lo), min(b, hi)))
        return out


class CommClock:
    """Seconds spent inside communication calls (what a step waits for, overlap excluded)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._t = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._t

    def take(self):
        s, self.seconds = self.seconds, 0.0
        return s


class GradBuckets:
    """The flat gradient (P,) float32 in backward order, cut into buckets of whole parameters of at
    least bucket_bytes each. add() is the model's gradient hook: it stores each gradient as backward
    hands it over and, on the last micro-batch, launches a bucket's all-reduce once it is complete."""

    def __init__(self, comm, flat, bucket_bytes, clock):
        if bucket_bytes < 1:
            raise ValueError(f"bucket_bytes: expected a positive int, got {bucket_bytes!r}")
        self.comm, self.flat, self.clock = comm, flat, clock
        self.grad = np.zeros(flat.numel, dtype=np.float32)             # (P,)
        self.buckets, self.bucket_of, size = [[]], {}, 0               # names per bucket
        for n in flat.names:
            if size >= bucket_bytes:
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(n)
            self.bucket_of[n] = len(self.buckets) - 1
            size += 4 * int(np.prod(flat.shapes[n]))
        self.requests, self.missing = [], []

    def bucket_range(self, b):  # -> (lo, hi) in the flat vector
        names = self.buckets[b]
        return self.flat.offset[names[0]][0], self.flat.offset[names[-1]][1]

    def start(self, micro, n_micro):
        """Call before micro-batch `micro` (0-based) of `n_micro` runs its backward."""
        self.first, self.last, self.n_micro = micro == 0, micro == n_micro - 1, n_micro
        self.missing = [len(names) for names in self.buckets]
        self.requests = []

    def add(self, grads):  # {name: gradient} as backward produces them
        for n, g in grads.items():
            view = self.flat.view(self.grad, n)
            if self.first:
                view[...] = g
            else:
                view += g
            if self.last:
                b = self.bucket_of[n]
                self.missing[b] -= 1
                if self.missing[b] == 0:
                    self._launch(b)
        with self.clock:
            self.comm.test(self.requests)

    def _launch(self, b):
        lo, hi = self.bucket_range(b)
        if self.n_micro > 1:  # mean over micro-batches, as one process computes it
            self.grad[lo:hi] *= np.float32(1.0 / self.n_micro)
        with self.clock:
            req = self.comm.iallreduce_sum(self.grad[lo:hi])
        if req is not None:
            self.requests.append(req)

    def finish(self):
        """Wait for every bucket; the flat gradient becomes the mean over all ranks' rows."""
        if any(self.missing):
            absent = [n for b, k in enumerate(self.missing) if k for n in self.buckets[b]]
            raise RuntimeError(f"gradients never produced by backward: {absent[:3]}")
        with self.clock:
            self.comm.waitall(self.requests)
        self.requests = []
        if self.comm.size > 1:
            self.grad *= np.float32(1.0 / self.comm.size)


class ZeroAdamW:
    """AdamW (optim.AdamW's update, kernels.adamw_step) whose moments m, v cover only this rank's
    slice of the flat parameter vector (ZeRO-1). step() updates the slice, then all-gathers.
    state_dict() gathers the full moments on rank 0 in optim.AdamW's format, so a checkpoint
    written with N ranks loads into any number of ranks, or into a plain AdamW."""

    def __init__(self, comm, flat, groups, lr=3e-4, betas=(0.9, 0.95), eps=1e-8):
        """groups: optim.AdamW's parameter groups ([{"params": [names], "weight_decay": float,
        "lr_scale": float (default 1)}], e.g. optim.default_param_groups), covering every parameter."""
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas: expected each in [0, 1), got {betas}")
        group_of = {n: g for g in groups for n in g["params"]}
        if sorted(group_of) != sorted(flat.names) or sum(len(g["params"]) for g in groups) != len(flat.names):
            raise ValueError("groups: every parameter must be in exactly one group")
        self.comm, self.flat, self.lr, self.betas, self.eps = comm, flat, lr, tuple(betas), eps
        self.bounds = shard_bounds(flat.numel, comm.size)
        self.lo, self.hi = self.bounds[comm.rank]
        self.m = np.zeros(self.hi - self.lo, dtype=np.float32)        # (P/N,)
        self.v = np.zeros(self.hi - self.lo, dtype=np.float32)        # (P/N,)
        self.segments = [(n, a, b, group_of[n]["weight_decay"], group_of[n].get("lr_scale", 1.0))
                         for n, a, b in flat.pieces(self.lo, self.hi)]
        self.step_count = 0
        self.clock = CommClock()

    def shard_sq_norm(self, grad):  # grad (P,) -> sum of squares over this rank's slice, float64
        g = grad[self.lo:self.hi].astype(np.float64)
        return float(np.dot(g, g))

    def step(self, grad, lr=None):
        """One AdamW update of this rank's slice from the flat mean gradient (P,); then all-gather."""
        lr = self.lr if lr is None else lr
        self.step_count += 1
        b1, b2 = self.betas
        p, lo = self.flat.data, self.lo
        for n, a, b, wd, scale in self.segments:
            kernels.adamw_step(p[a:b], grad[a:b], self.m[a - lo:b - lo], self.v[a - lo:b - lo],
                               lr * scale, b1, b2, self.eps, wd, self.step_count)
        with self.clock:
            self.comm.allgather(p, self.bounds)

    def state_dict(self):
        """Collective. -> (step, {"m.<name>": array, "v.<name>": array}) on rank 0, (step, None)
        elsewhere."""
        full = {}
        for key, shard in (("m", self.m), ("v", self.v)):
            flat = np.empty(self.flat.numel, dtype=np.float32) if self.comm.rank == 0 else None
            self.comm.gather(shard, flat, self.bounds)
            if flat is not None:
                full.update({f"{key}.{n}": self.flat.view(flat, n).copy() for n in reversed(self.flat.names)})
        return self.step_count, (full if self.comm.rank == 0 else None)

    def load_state_dict(self, step, state):
        """Take this rank's slices of a full optimizer state (optim.AdamW.state_dict's format)."""
        for key, shard in (("m", self.m), ("v", self.v)):
            for n, a, b in self.flat.pieces(self.lo, self.hi):
                name = f"{key}.{n}"
                if name not in state or tuple(state[name].shape) != self.flat.shapes[n]:
                    raise ValueError(f"optimizer state: missing or misshapen {name!r}")
                start = self.flat.offset[n][0]
                shard[a - self.lo:b - self.lo] = np.asarray(state[name], dtype=np.float32).reshape(-1)[a - start:b - start]
        self.step_count = int(step)


class OptimizerState:
    """A gathered optimizer state that checkpoint.save_checkpoint can write (it calls state_dict())."""

    def __init__(self, step, state):
        self.step, self.state = step, state

    def state_dict(self):
        return self.step, self.state


class DataParallel:
    """One rank's share of a data-parallel training step: the local rows of each global batch,
    the bucketed gradient all-reduce, the sharded optimizer, the agreed scalars, checkpoints.
    groups: the optimizer's parameter groups (optim.default_param_groups). Construction rebinds
    model.params to views of one flat vector (FlatParams)."""

    def __init__(self, model, comm, groups, lr, betas, bucket_bytes=DEFAULT_BUCKET_BYTES):
        self.comm, self.clock = comm, CommClock()
        self.flat = FlatParams(model.params)
        self.buckets = GradBuckets(comm, self.flat, bucket_bytes, self.clock)
        self.opt = ZeroAdamW(comm, self.flat, groups, lr, betas)
        self.opt.clock = self.clock
        self.grads = {n: self.flat.view(self.buckets.grad, n) for n in model.params}  # views, params' order

    def rows(self, batch_size):
        """This rank's rows of a global batch of batch_size sequences."""
        if batch_size % self.comm.size:
            raise ValueError(f"batch_size: the global batch must split evenly over {self.comm.size} ranks, "
                             f"got {batch_size}")
        k = batch_size // self.comm.size
        return slice(self.comm.rank * k, (self.comm.rank + 1) * k)

    def loss_and_grads(self, model, batches, checkpoint=False):
        """batches: [(x, y) (B, T) int] global micro-batches of one optimizer step. Runs this rank's
        rows through forward and backward; afterwards self.grads holds the gradient of the mean loss
        over all B rows of every micro-batch. -> this rank's mean loss (float)."""
        loss = 0.0
        for i, (x, y) in enumerate(batches):
            rows = self.rows(len(x))
            self.buckets.start(i, len(batches))
            l, _ = model.loss_and_grads(x[rows], y[rows], checkpoint=checkpoint, on_grads=self.buckets.add)
            loss += l / len(batches)
        self.buckets.finish()
        return loss

    def agree(self, *local):
        """Means over ranks of per-rank floats, identical on every rank (sum_in_rank_order)."""
        with self.clock:
            total = sum_in_rank_order(self.comm, local)
        return [t / self.comm.size for t in total]

    def loss_and_norm(self, local_loss):
        """-> (global mean loss, global gradient L2 norm), the same on every rank."""
        local_sq = self.opt.shard_sq_norm(self.buckets.grad)
        with self.clock:
            loss, sq = sum_in_rank_order(self.comm, [local_loss, local_sq])
        return loss / self.comm.size, float(np.sqrt(sq))

    def scale_grads(self, coef):
        self.buckets.grad *= np.float32(coef)

    def step(self, lr):
        self.opt.step(self.buckets.grad, lr=lr)

    def save(self, out_dir, model, state, save_checkpoint):
        """Collective: gather the optimizer state, rank 0 writes the checkpoint, all wait for it."""
        opt_step, opt_state = self.opt.state_dict()
        path = None
        if self.comm.rank == 0:
            path = save_checkpoint(out_dir, model, OptimizerState(opt_step, opt_state), state)
        self.comm.barrier()   # nobody reads `latest` before rank 0 has written it
        return path
