"""Chain of thought and self-consistency (reasoning/cot.py): prompt formats, answer extraction,
majority voting, and a scripted sampler whose vote accuracy follows the binomial formula."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.reasoning.cot import (Example, cot_prompt, extract_answer, majority_accuracy, majority_vote,
                                   model_sampler, self_consistency, standard_prompt, zero_shot_cot_prompt)

SHOTS = [Example("Roger has 5 balls and buys 2 cans of 3. How many balls?", "11",
                 "Roger started with 5 balls. 2 cans of 3 balls each is 6 balls. 5 + 6 = 11."),
         Example("There are 3 cars and 2 more arrive. How many cars?", "5", "3 + 2 = 5.")]


def test_prompt_formats():
    assert standard_prompt(SHOTS[1:], "What is 2 + 2?") == (
        "Q: There are 3 cars and 2 more arrive. How many cars?\nA: The answer is 5.\n\nQ: What is 2 + 2?\nA:")
    assert cot_prompt(SHOTS[1:], "What is 2 + 2?") == (
        "Q: There are 3 cars and 2 more arrive. How many cars?\nA: 3 + 2 = 5. The answer is 5.\n\n"
        "Q: What is 2 + 2?\nA:")
    assert zero_shot_cot_prompt("What is 2 + 2?") == "Q: What is 2 + 2?\nA: Let's think step by step."
    with pytest.raises(ValueError, match="rationale"):
        cot_prompt([Example("q", "a")], "x")
    with pytest.raises(TypeError, match="examples"):
        standard_prompt(["q"], "x")


@pytest.mark.parametrize("text,answer", [
    ("5 + 6 = 11. The answer is 11.", "11"),
    ("The answer is 7. Wait, no. The answer is 8.", "8"),
    ("The answer is 1,000.0 dollars.", "1000"),
    ("the answer is: -3", "-3"),
    ("The answer is (B).", "b"),
    ("The answer is Paris.", "paris"),
    ("First 12, then 15 apples", "15"),
    ("no digits at all", None),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@settings(max_examples=100, deadline=None)
@given(n=st.integers(-10**6, 10**6), prefix=st.text(alphabet="abc .\n", max_size=20))
def test_extract_answer_finds_the_committed_number(n, prefix):
    assert extract_answer(f"{prefix} 99 The answer is {n}.") == str(n)


def test_majority_vote_ties_and_none():
    assert majority_vote(["3", None, "4", "4", "3"]) == ("3", {"3": 2, "4": 2})   # tie: first seen
    assert majority_vote([None, None])[0] is None
    assert majority_vote(["a", "b", "b"])[0] == "b"


def test_majority_accuracy_formula():
    assert majority_accuracy(0.7, 1) == pytest.approx(0.7)
    assert majority_accuracy(0.7, 3) == pytest.approx(0.7 ** 3 + 3 * 0.7 ** 2 * 0.3)
    assert majority_accuracy(0.7, 2) == pytest.approx(0.7)      # 2 paths: a tie is a coin flip
    for p in (0.55, 0.8):   # Condorcet's jury theorem: better than chance -> improves with n
        accs = [majority_accuracy(p, n) for n in (1, 3, 5, 9, 21, 51)]
        assert all(a < b for a, b in zip(accs, accs[1:])) and accs[-1] > p
    assert majority_accuracy(0.4, 21) < 0.4


def scripted_sampler(rng, p, wrong_answers):
    """A reasoning path that ends in the right answer "42" with probability p, else in one of
    wrong_answers (uniformly)."""
    def sample(i):
        if rng.random() < p:
            return f"Step {i}: 40 + 2 = 42. The answer is 42."
        return f"Step {i}: a slip. The answer is {wrong_answers[int(rng.integers(len(wrong_answers)))]}."
    return sample


@pytest.mark.parametrize("p", [0.35, 0.6, 0.75])
def test_self_consistency_follows_the_binomial_prediction(p):
    rng = np.random.default_rng(7)
    trials = 3000
    measured = []
    for n in (1, 2, 3, 5, 9, 15):
        right = sum(self_consistency(scripted_sampler(rng, p, ["41"]), n).answer == "42" for _ in range(trials))
        acc, pred = right / trials, majority_accuracy(p, n)
        # binomial standard error of a proportion over `trials` questions; 4.5 sigma over 18 cases
        assert abs(acc - pred) < 4.5 * math.sqrt(pred * (1 - pred) / trials) + 1e-9, (p, n, acc, pred)
        measured.append(acc)
    if p > 0.5:
        assert measured[-1] > measured[0] + 0.1        # voting helps
    else:
        assert measured[-1] < measured[0]              # and hurts when paths are mostly wrong


def test_scattered_wrong_answers_make_voting_easier():
    """With wrong paths split over many answers, the right one wins the plurality more often than
    the binary formula (its worst case) predicts, even below p = 0.5."""
    rng = np.random.default_rng(3)
    p, n, trials = 0.4, 9, 2000
    right = sum(self_consistency(scripted_sampler(rng, p, [str(k) for k in range(10)]), n).answer == "42"
                for _ in range(trials))
    assert right / trials > majority_accuracy(p, n) + 0.2


def test_model_sampler_runs_a_model():
    from minillm.model import ModelConfig, Transformer
    from minillm.tokenizer import ByteTokenizer
    model = Transformer(ModelConfig.preset("llama-tiny", max_seq_len=64), seed=0)
    sample = model_sampler(model, ByteTokenizer(), cot_prompt(SHOTS[1:], "What is 1 + 1?")[-40:],
                           max_new_tokens=8, temperature=1.0, seed=5)
    res = self_consistency(sample, 3)
    assert len(res.paths) == 3 and all(isinstance(t, str) for t in res.paths)
    assert sample(1) == res.paths[1]                         # reproducible per path index
    assert sum(res.votes.values()) == sum(a is not None for a in res.answers)
