"""AdamW, clipping and schedules against torch.optim.AdamW / clip_grad_norm_ / LambdaLR."""
import math

import numpy as np
import pytest

from minillm.optim import (AdamW, clip_grad_norm, default_param_groups, global_grad_norm, warmup_cosine,
                           warmup_stable_decay)


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
