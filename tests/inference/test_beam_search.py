"""Beam search on the paged cache equals a plain full-recompute beam search, and shares blocks."""
import numpy as np
import pytest

from minillm.inference import beam_search, generate
from minillm.nn.softmax import log_softmax


def reference_beam_search(model, prompt, max_new, W, length_penalty=1.0, eos=None):
    """The same algorithm with no cache at all: every beam re-runs the model over its sequence."""
    beams, finished = [([], 0.0)], []
    for t in range(max_new):
        logp = np.stack([log_softmax(model.forward(np.r_[prompt, g].astype(np.int64)[None])[0, -1].astype(np.float64))
                         for g, _ in beams])
        flat = (np.array([s for _, s in beams])[:, None] + logp).ravel()
        V = logp.shape[1]
        top = np.argpartition(-flat, min(W, flat.size) - 1)[:min(W, flat.size)]
        top = top[np.lexsort((top, -flat[top]))]
        nxt = [(beams[c // V][0] + [int(c % V)], float(flat[c])) for c in top]
        beams = []
        for g, s in nxt:
            if (eos is not None and g[-1] == eos) or t == max_new - 1:
                finished.append((g, s / len(g) ** length_penalty))
            else:
                beams.append((g, s))
        if not beams:
            break
    finished.sort(key=lambda x: -x[1])
    return finished


@pytest.mark.parametrize("W", [1, 3, 5])
def test_beam_search_equals_reference(tiny_model, W):
    prompt = np.arange(10, 31)
    best, info = beam_search(tiny_model, prompt, 8, beam_width=W, block_size=4)
    ref = reference_beam_search(tiny_model, prompt, 8, W)
    assert [g.tolist() for g, _ in info["beams"]] == [g for g, _ in ref]
    np.testing.assert_allclose([s for _, s in info["beams"]], [s for _, s in ref], rtol=1e-5)
    assert info["blocks_in_use_after"] == 0                      # every block came back
    if W == 1:
        np.testing.assert_array_equal(best, generate(tiny_model, prompt, 8))


def test_beams_share_the_prompt_blocks(llama_tiny):
    prompt = np.arange(5, 69)   # 64 tokens = 16 blocks of 4, stored once for all 4 beams
    _, info = beam_search(llama_tiny, prompt, 6, beam_width=4, block_size=4)
    assert info["peak_blocks"] <= 16 + 4 * 2 + 4
    assert info["peak_blocks"] < 0.5 * info["blocks_without_sharing"]


def test_eos_ends_hypotheses(llama_tiny):
    prompt = np.arange(3, 9)
    greedy = generate(llama_tiny, prompt, 5)
    best, info = beam_search(llama_tiny, prompt, 5, beam_width=1, eos=int(greedy[2]))
    np.testing.assert_array_equal(best, greedy[:int(np.argmax(greedy == greedy[2])) + 1])
    ref = reference_beam_search(llama_tiny, prompt, 5, 3, eos=int(greedy[1]))
    _, info = beam_search(llama_tiny, prompt, 5, beam_width=3, eos=int(greedy[1]))
    assert [g.tolist() for g, _ in info["beams"]] == [g for g, _ in ref]


def test_bad_arguments(llama_tiny):
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(llama_tiny, [1, 2], 3, beam_width=0)
