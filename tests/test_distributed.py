"""Data-parallel pieces in one process: the flat parameter layout, the gradient hook order, the
bucketed reducer, and ZeRO-1 AdamW -- N simulated ranks together must equal one optim.AdamW."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer
from minillm.distributed import (CommClock, DataParallel, FlatParams, GradBuckets, SingleProcess, ZeroAdamW,
                                 communicator, launched_world_size, shard_bounds, sum_in_rank_order)
from minillm.optim import AdamW, default_param_groups


class OneOfN(SingleProcess):
    """Rank r of n with every collective a no-op: lets a test run each rank's share on its own."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size


def tiny(arch="llama", **kw):
    return ModelConfig.preset(f"{arch}-tiny", vocab_size=32, max_seq_len=16, n_layer=2, **kw)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 10_000), size=st.integers(1, 9))
def test_shard_bounds_cover_the_vector_in_nearly_equal_slices(n, size):
    b = shard_bounds(n, size)
    assert b[0][0] == 0 and b[-1][1] == n and len(b) == size
    assert all(hi0 == lo1 for (_, hi0), (lo1, _) in zip(b, b[1:]))
    sizes = [hi - lo for lo, hi in b]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_flat_params_are_views_in_backward_order(arch):
    model = Transformer(tiny(arch), seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    flat = FlatParams(model.params)
    assert list(model.params) == list(before)                     # the model's order is unchanged
    for k, v in model.params.items():
        assert np.array_equal(v, before[k]) and np.shares_memory(v, flat.data)
    assert flat.names == list(reversed(list(before)))
    flat.data[:] = 0.0
    assert all(not v.any() for v in model.params.values())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_gradient_hook_sees_every_gradient_once_in_backward_order(arch):
    model = Transformer(tiny(arch), seed=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 32, (2, 8))
    seen = []
    _, grads = model.loss_and_grads(x, np.roll(x, -1, 1), on_grads=lambda g: seen.append(dict(g)))
    order = [n for g in seen for n in g]
    assert sorted(order) == sorted(grads)                          # each exactly once
    flat_order = FlatParams({k: v.copy() for k, v in model.params.items()}).names
    groups = [set(g) for g in seen]
    pos = {n: i for i, g in enumerate(groups) for n in g}
    assert [pos[n] for n in flat_order] == sorted(pos[n] for n in flat_order)  # layout follows arrival
    for g in seen:
        for n, a in g.items():
            assert np.array_equal(a, grads[n])


def test_buckets_average_micro_batches_and_refuse_missing_gradients():
    model = Transformer(tiny(), seed=0)
    flat = FlatParams(model.params)
    buckets = GradBuckets(SingleProcess(), flat, bucket_bytes=4096, clock=CommClock())
    assert len(buckets.buckets) > 2
    assert [n for b in buckets.buckets for n in b] == flat.names
    rng = np.random.default_rng(1)
    g1 = {n: rng.standard_normal(flat.shapes[n]).astype(np.float32) for n in flat.names}
    g2 = {n: rng.standard_normal(flat.shapes[n]).astype(np.float32) for n in flat.names}
    for i, g in enumerate((g1, g2)):
        buckets.start(i, 2)
        buckets.add(g)
    buckets.finish()
    for n in flat.names:
        want = (g1[n] + g2[n]) * np.float32(0.5)
        assert np.array_equal(flat.view(buckets.grad, n), want)
    buckets.start(0, 1)
    buckets.add({flat.names[0]: g1[flat.names[0]]})
    with pytest.raises(RuntimeError, match="never produced"):
        buckets.finish()


@settings(max_examples=15, deadline=None)
@given(size=st.integers(1, 5), steps=st.integers(1, 3), seed=st.integers(0, 2**31 - 1),
       arch=st.sampled_from(["llama", "gpt2"]))
def test_zero1_shards_together_equal_one_adamw(size, steps, seed, arch):
    """Each simulated rank updates only its slice; stitching the slices must give exactly what
    optim.AdamW gives on the whole model (the same elementwise kernel, the same order)."""
    cfg = tiny(arch)
    ref = Transformer(cfg, seed=seed % 1000)
    opt = AdamW(ref.params, lr=1e-2, weight_decay=0.1)
    ranks = []
    for r in range(size):
        m = Transformer(cfg, seed=seed % 1000)
        flat = FlatParams(m.params)
        ranks.append((flat, ZeroAdamW(OneOfN(r, size), flat, default_param_groups(m.params, 0.1), lr=1e-2)))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in ref.params.items()}
        opt.step(grads)
        stitched = np.empty_like(ranks[0][0].data)
        for flat, z in ranks:
            g = np.empty_like(flat.data)
            for n in flat.names:
                flat.view(g, n)[...] = grads[n]
            z.step(g)
            stitched[z.lo:z.hi] = flat.data[z.lo:z.hi]
        for flat, _ in ranks:       # the all-gather, by hand
            flat.data[:] = stitched
    for n, p in ref.params.items():
        assert np.array_equal(ranks[0][0].view(ranks[0][0].data, n), p), n


def test_zero1_state_round_trips_through_adamw_format():
    model = Transformer(tiny(), seed=0)
    flat = FlatParams(model.params)
    groups = default_param_groups(model.params, 0.1)
    z = ZeroAdamW(SingleProcess(), flat, groups, lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        z.step(rng.standard_normal(flat.numel).astype(np.float32))
    step, state = z.state_dict()
    plain = AdamW({k: v.copy() for k, v in model.params.items()})
    plain.load_state_dict(step, state)                              # the format optim.AdamW reads
    for r in range(3):                                              # any rank count takes its slices
        other = ZeroAdamW(OneOfN(r, 3), flat, groups)
        other.load_state_dict(step, state)
        assert np.array_equal(other.m, z.m[other.lo:other.hi]) and other.step_count == 2
    bad = dict(state)
    bad.pop(next(iter(bad)))
    with pytest.raises(ValueError, match="missing or misshapen"):
        ZeroAdamW(SingleProcess(), flat, groups).load_state_dict(step, bad)
    with pytest.raises(ValueError, match="groups: every parameter must be in exactly one group"):
        ZeroAdamW(SingleProcess(), flat, groups[:1])


def test_rows_split_the_global_batch_and_reject_uneven_splits():
    model = Transformer(tiny(), seed=0)
    dp = DataParallel(model, OneOfN(1, 4), default_param_groups(model.params, 0.1), lr=1e-3, betas=(0.9, 0.95))
    assert dp.rows(8) == slice(2, 4)
    with pytest.raises(ValueError, match="batch_size: the global batch must split evenly over 4 ranks, got 6"):
        dp.rows(6)


def test_one_process_without_mpi(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert launched_world_size() is None
    comm = communicator()
    assert isinstance(comm, SingleProcess) and (comm.rank, comm.size) == (0, 1)
    assert sum_in_rank_order(SingleProcess(), [1.5, 2.0]) == [1.5, 2.0]


def test_missing_mpi4py_under_mpirun_says_what_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kw):
        if name.startswith("mpi4py"):
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    with pytest.raises(RuntimeError, match=r"pip install minillm\[dist\]"):
        communicator()
