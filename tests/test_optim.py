"""AdamW, clipping and schedules against torch.optim.AdamW / clip_grad_norm_ / LambdaLR."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import kernels
from minillm.kernels import native, reference
from minillm.optim import (AdamW, clip_coefficient, clip_grad_norm, default_param_groups, global_grad_norm,
                           warmup_cosine, warmup_stable_decay)


def make_params(rng):
    return {"h.0.attn.weight": rng.standard_normal((6, 5)).astype(np.float32),
            "h.0.ln.bias": rng.standard_normal(5).astype(np.float32),
            "transformer.wte.weight": rng.standard_normal((7, 5)).astype(np.float32)}


def test_param_groups_exclude_norms_biases_embeddings():
    groups = default_param_groups(make_params(np.random.default_rng(0)), 0.1)
    assert groups[0] == {"params": ["h.0.attn.weight"], "weight_decay": 0.1}
    assert sorted(groups[1]["params"]) == ["h.0.ln.bias", "transformer.wte.weight"]


@pytest.mark.parametrize("schedule", [warmup_cosine, warmup_stable_decay])
def test_adamw_clipping_schedule_track_torch_over_20_steps(schedule):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = make_params(rng)
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    groups = [{"params": [tparams[n] for n in g["params"]], "weight_decay": g["weight_decay"]} for g in opt.groups]
    topt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(topt, lambda s: schedule(s, 1.0, 5, 20, min_lr=0.1))
    for step in range(20):
        grads = {k: (rng.standard_normal(v.shape) * 3).astype(np.float32) for k, v in params.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k].copy())
        norm = clip_grad_norm(grads, 1.0)
        tnorm = torch.nn.utils.clip_grad_norm_(list(tparams.values()), 1.0)
        assert abs(norm - tnorm.item()) < 1e-4 * norm
        opt.step(grads, lr=schedule(step, 1e-2, 5, 20, min_lr=1e-3))
        topt.step()
        sched.step()
        for k in params:
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), atol=1e-5)


def test_schedules_shape():
    lrs = [warmup_cosine(s, 1.0, 10, 100, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[100] == pytest.approx(0.1)
    wsd = [warmup_stable_decay(s, 1.0, 10, 100, decay_frac=0.2, min_lr=0.0) for s in range(101)]
    assert all(v == 1.0 for v in wsd[10:80]) and wsd[90] == pytest.approx(0.5) and wsd[100] == 0.0


def test_clip_leaves_small_gradients_alone_and_norm_is_exact():
    g = {"a": np.array([3.0, 4.0], np.float32)}
    assert clip_grad_norm(g, 10.0) == pytest.approx(5.0) and np.array_equal(g["a"], [3, 4])
    clip_grad_norm(g, 1.0)
    assert global_grad_norm(g) == pytest.approx(1.0, rel=1e-5)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    p1 = make_params(rng)
    p2 = {k: v.copy() for k, v in p1.items()}
    o1, o2 = AdamW(p1, lr=1e-2), AdamW(p2, lr=1e-2)
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in p1.items()} for _ in range(4)]
    for g in grads[:2]:
        o1.step(g)
        o2.step(g)
    o3 = AdamW(p2, lr=1e-2)
    o3.load_state_dict(*o2.state_dict())
    for g in grads[2:]:
        o1.step(g)
        o3.step(g)
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)


def test_bad_arguments():
    p = make_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="groups"):
        AdamW(p, groups=[{"params": ["h.0.attn.weight"], "weight_decay": 0.0}])
    with pytest.raises(ValueError, match="betas"):
        AdamW(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="params"):
        AdamW({"x": np.zeros(3)})
    with pytest.raises(ValueError, match="grads"):
        AdamW(p).step({k: np.zeros(3, np.float32) for k in p})
    assert math.isfinite(warmup_cosine(1000, 1.0, 10, 100))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 70_000), scale=st.floats(1e-3, 1.0), step=st.integers(1, 50),
       seed=st.integers(0, 2**16))
def test_adamw_grad_scale_equals_scaling_gradients_first(n, scale, step, seed):
    """adamw_step(..., grad_scale=c) reads g * c and leaves g alone: the same bits as scaling g in
    place (clip_grad_norm) and then stepping, in the C kernel and the NumPy reference; sizes reach
    past the kernel's threading threshold (65536)."""
    rng = np.random.default_rng(seed)
    p, g, m = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(np.float32)
    for impl in (kernels.adamw_step, reference.adamw_step):
        want = [a.copy() for a in (p, g, m, v)]
        want[1] *= np.asarray(scale, dtype=np.float32)
        impl(want[0], want[1], want[2], want[3], 1e-3, 0.9, 0.95, 1e-8, 0.1, step)
        got = [a.copy() for a in (p, g, m, v)]
        impl(got[0], got[1], got[2], got[3], 1e-3, 0.9, 0.95, 1e-8, 0.1, step, scale)
        np.testing.assert_array_equal(got[1], g)                 # the gradient is not modified
        for w, a in zip((want[0], want[2], want[3]), (got[0], got[2], got[3])):
            np.testing.assert_array_equal(a, w)


def test_adamw_step_with_clip_coefficient_equals_clip_then_step():
    rng = np.random.default_rng(3)
    p1 = make_params(rng)
    p2 = {k: v.copy() for k, v in p1.items()}
    o1, o2 = AdamW(p1, lr=1e-2), AdamW(p2, lr=1e-2)
    for _ in range(3):
        grads = {k: (rng.standard_normal(v.shape) * 3).astype(np.float32) for k, v in p1.items()}
        kept = {k: g.copy() for k, g in grads.items()}
        coef = clip_coefficient(global_grad_norm(grads), 1.0)
        assert coef < 1.0
        o2.step(grads, grad_scale=coef)
        assert all(np.array_equal(grads[k], kept[k]) for k in grads)
        clip_grad_norm(grads, 1.0)
        o1.step(grads)
        for k in p1:
            np.testing.assert_array_equal(p1[k], p2[k])


@pytest.mark.skipif(native.lib is None, reason="native kernels not built")
def test_adamw_grad_scale_must_be_a_number():
    p = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="grad_scale"):
        native.adamw_step(p, p.copy(), p.copy(), p.copy(), 1e-3, 0.9, 0.95, 1e-8, 0.0, 1, "0.5")
