"""Shared fixtures of the alignment tests."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer


def _f64_model(seed=0):
    """A 1-layer Llama-flavoured model in float64 with generic (non-1/0) norm weights: finite
    differences need float64, and the float64 path runs the NumPy reference kernels."""
    cfg = ModelConfig(arch="llama", vocab_size=11, n_layer=1, n_head=2, n_kv_head=1, d_model=8, ffn_dim=12,
                      max_seq_len=16)
    m = Transformer(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    m.params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float64) for k, v in m.params.items()}
    return m


@pytest.fixture
def f64_model():
    return _f64_model
