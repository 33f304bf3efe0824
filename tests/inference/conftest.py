"""Shared tiny models for the inference tests (random weights: outputs are deterministic but not
text-like, which is all equality tests need)."""
import pytest

from minillm import ModelConfig, Transformer


@pytest.fixture(scope="session", params=["llama-tiny", "gpt2-tiny"])
def tiny_model(request):
    return Transformer(ModelConfig.preset(request.param), seed=1)


@pytest.fixture(scope="session")
def llama_tiny():
    return Transformer(ModelConfig.preset("llama-tiny"), seed=1)
