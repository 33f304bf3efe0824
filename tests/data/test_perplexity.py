"""Character Kneser-Ney LM: a proper distribution, fluent text beats gibberish, band filtering."""
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data.perplexity import CharNGramLM, PerplexityBand

TRAIN = ["the cat sat on the mat and the dog sat on the log",
         "a bird in the hand is worth two in the bush", "the quick brown fox jumps over the lazy dog"]


@settings(max_examples=25, deadline=None)
@given(context=st.text(alphabet="the catsdog\x02", max_size=6), order=st.integers(1, 4))
def test_probabilities_sum_to_one_over_the_alphabet(context, order):
    lm = CharNGramLM.train(TRAIN, order=order)
    # the alphabet plus one 'unknown' symbol carries all the mass
    probs = [math.exp(lm._char_log_prob(context, w)) for w in sorted(lm.vocab)]
    unknown = math.exp(lm._char_log_prob(context, "\u2603"))
    assert sum(probs) + unknown == pytest.approx(1.0, abs=1e-9)


def test_fluent_text_has_lower_perplexity_than_gibberish():
    from pydoc_data.topics import topics
    docs = list(topics.values())
    lm = CharNGramLM.train(docs[:40], order=5)
    rng = random.Random(0)
    held_out = docs[40:60]
    gibberish = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(500)) for _ in range(5)]
    fluent = max(lm.perplexity(d[:2000]) for d in held_out)
    assert fluent < min(lm.perplexity(g) for g in gibberish)
    band = PerplexityBand(lm, low_pct=0, high_pct=90).fit([d[:2000] for d in held_out])
    assert all(band.check(g) == "perplexity_too_high" for g in gibberish)
    kept = sum(band.check(d[:2000]) is None for d in held_out)
    assert kept == 18                           # the 90th percentile of 20 keeps 18 of them


def test_any_scorer_object_plugs_in_and_errors_are_named():
    class Constant:
        def log_prob(self, text):
            return -1.0 if "good" in text else -5.0
    band = PerplexityBand(Constant(), max_ppl=10.0, min_ppl=0.0)
    assert band.check("good text") is None and band.check("bad") == "perplexity_too_high"
    with pytest.raises(TypeError, match="scorer"):
        PerplexityBand(object())
    with pytest.raises(ValueError, match="low_pct"):
        PerplexityBand(Constant(), low_pct=50, high_pct=10)


def test_transformer_scorer_ranks_fluent_text_above_noise(tmp_path):
    """A minillm model trained a little on repetitive text gives it a lower perplexity than noise."""
    import random

    from minillm import ModelConfig, Transformer
    from minillm.data.perplexity import PerplexityBand, TransformerScorer
    from minillm.optim import AdamW
    from minillm.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    text = "the cat sat on the mat. " * 40
    ids = np.array(tok.encode(text), dtype=np.int64)
    model = Transformer(ModelConfig.preset("llama-tiny", max_seq_len=64), seed=0)
    opt = AdamW(model.params, lr=3e-3, weight_decay=0.0)
    for step in range(30):
        s = (step * 7) % (len(ids) - 65)
        _, g = model.loss_and_grads(ids[None, s:s + 64], ids[None, s + 1:s + 65])
        opt.step(g)
    scorer = TransformerScorer(model, tok)
    rnd = random.Random(0)
    noise = "".join(rnd.choice("qzxjvkw%$#@!") for _ in range(120))
    assert scorer.log_prob("the cat sat on the mat. the cat sat") > scorer.log_prob(noise)
    band = PerplexityBand(scorer, min_ppl=0.0, max_ppl=math.exp(-scorer.log_prob(noise)) * 0.5)
    assert band.check("the cat sat on the mat.") is None and band.check(noise) == "perplexity_too_high"
