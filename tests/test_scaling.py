"""Chinchilla sizing (minillm/scaling.py): the closed form is the minimum of the fitted loss on
the iso-FLOP curve, spends exactly the budget, and the plan CLI / plot work."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import scaling
from minillm.model import PRESETS, ModelConfig


def test_paper_constants():
    # Hoffmann et al. 2022, eq. 10
    assert (scaling.E, scaling.A, scaling.B, scaling.ALPHA, scaling.BETA) == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert scaling.chinchilla_loss(1e9, 2e10) == pytest.approx(1.69 + 406.4 / 1e9 ** 0.34 + 410.7 / 2e10 ** 0.28)


@settings(max_examples=40, deadline=None)
@given(log_c=st.floats(12.0, 26.0))
def test_optimum_spends_budget_and_minimises_loss(log_c):
    C = 10.0 ** log_c
    N, D = scaling.chinchilla_optimal(C)
    assert 6 * N * D == pytest.approx(C, rel=1e-12)
    # independent check: a dense scan of the iso-FLOP curve finds its minimum at N (within the grid step)
    grid = np.logspace(math.log10(N) - 2, math.log10(N) + 2, 40001)        # step 1e-4 decades
    best = grid[np.argmin(scaling.iso_flop_curve(C, grid))]
    assert abs(math.log10(best / N)) <= 2e-4
    # and it is a minimum: moving either way along the curve costs loss
    L = scaling.chinchilla_loss(N, D)
    assert L < scaling.iso_flop_curve(C, N * 1.05) and L < scaling.iso_flop_curve(C, N / 1.05)


def test_exponents():
    # N_opt ~ C^(beta/(alpha+beta)), D_opt ~ C^(alpha/(alpha+beta)) (Hoffmann et al. 2022, eq. 4)
    (n1, d1), (n2, d2) = scaling.chinchilla_optimal(1e20), scaling.chinchilla_optimal(1e21)
    assert math.log10(n2 / n1) == pytest.approx(0.28 / 0.62, rel=1e-12)
    assert math.log10(d2 / d1) == pytest.approx(0.34 / 0.62, rel=1e-12)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flops_breakdown_matches_model_config(name):
    cfg = ModelConfig.preset(name)
    fwd = sum(scaling.flops_breakdown(cfg).values())
    ref = cfg.flops_per_token(training=False)
    # ModelConfig counts every non-embedding parameter as matmul work, the norm weights and biases
    # (the 1-D parameters) too, at 2 FLOPs each: with those added the two counts agree exactly
    n_vectors = sum(int(np.prod(s)) for s in cfg.param_shapes().values() if len(s) == 1)
    assert fwd + 2 * n_vectors == ref
    assert 3 * (fwd + 2 * n_vectors) == cfg.flops_per_token(training=True)


@pytest.mark.parametrize("flops,vocab,seq", [(1e15, 2048, 128), (1e18, 32000, 2048), (1e21, 32000, 2048)])
def test_recommend_config_is_close_to_optimum(flops, vocab, seq):
    cfg, tokens = scaling.recommend_config(flops, vocab_size=vocab, seq_len=seq)
    n_opt, _ = scaling.chinchilla_optimal(flops)
    assert abs(math.log(cfg.num_params() / n_opt)) < 0.05
    assert 32 <= cfg.d_model / cfg.n_layer <= 256
    assert tokens * cfg.flops_per_token(seq) == pytest.approx(flops)


def test_bad_budget():
    for bad in (0, -1.0, float("nan"), float("inf"), "1e18", True):
        with pytest.raises(ValueError, match="flops"):
            scaling.chinchilla_optimal(bad)
    with pytest.raises(ValueError, match="n_params"):
        scaling.chinchilla_loss(0, 10)


def test_plan_cli_and_plot(tmp_path, capsys):
    from minillm.cli import main
    png = tmp_path / "iso.png"
    assert main(["plan", "--flops", "1e17", "--vocab-size", "4096", "--seq-len", "256", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    n_opt, d_opt = scaling.chinchilla_optimal(1e17)
    assert f"N = {n_opt:.4g}" in out and f"D = {d_opt:.4g}" in out and "ModelConfig(" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
