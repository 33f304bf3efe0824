"""examples/profile_train.py: its minillm table has a row for every operation class of the step,
and instrumenting the step leaves the library as it was (the wrappers are taken off again)."""
import importlib.util
import os

import numpy as np
import pytest

import minillm.kernels
import minillm.model
from minillm import ModelConfig

_PATH = os.path.join(os.path.dirname(__file__), "..", "examples", "profile_train.py")
_spec = importlib.util.spec_from_file_location("profile_train", _PATH)
profile_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile_train)


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny"])
def test_profile_rows_cover_the_step_and_instrumentation_is_undone(preset):
    cfg = ModelConfig.preset(preset)
    originals = (minillm.kernels.matmul, minillm.model.linear_backward, minillm.model.attention_forward)
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, (2, 16))
    y = rng.integers(0, cfg.vocab_size, (2, 16))
    prof = profile_train.profile_minillm(cfg, x, y, steps=1)
    assert (minillm.kernels.matmul, minillm.model.linear_backward, minillm.model.attention_forward) == originals
    head = f"{cfg.vocab_size}x{cfg.d_model}"
    for row in (f"GEMM fwd     {head}", f"GEMM bwd dx  {head}", f"GEMM bwd dW  {head}", "attention fwd",
                "attention bwd", "norm fwd", "norm bwd", "activation fwd", "activation bwd",
                "cross-entropy fwd+bwd", "embedding bwd", "clip: global grad norm", "AdamW (clip scale folded in)",
                "other: Python, residuals, copies/transposes", "step total"):
        assert row in prof, row
    assert ("rope fwd" in prof) == (cfg.position_scheme == "rope")
    assert ("bias grad (sum)" in prof) == (cfg.arch == "gpt2")
    qkv = cfg.d_model + 2 * cfg.n_kv_head * cfg.head_dim
    grouped = f"GEMM bwd dW  {qkv}x{cfg.d_model} (q,k,v grouped)"     # separate q, k, v weights
    assert (grouped in prof) == (cfg.arch == "llama")
