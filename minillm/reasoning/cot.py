"""Chain-of-thought prompting and self-consistency.

  standard_prompt     few-shot question -> answer exemplars (Brown et al. 2020, Sec. 2)
  cot_prompt          few-shot exemplars whose answers are preceded by the reasoning, "chain of
                      thought" (Wei et al. 2022, Sec. 2, Fig. 1 format "Q: ... A: <rationale> The answer is X.")
  zero_shot_cot_prompt  "Let's think step by step." after the question (Kojima et al. 2022, Sec. 3)
  extract_answer      the final answer in a generated text: the last "The answer is X", else the last number
  self_consistency    sample n reasoning paths, extract each answer, majority vote (Wang et al. 2023,
                      Sec. 2, eq. 1 with the unweighted vote) -- the vote, the paths and the tally
  majority_accuracy   the binomial prediction for the vote's accuracy when each path is right with
                      probability p and every wrong path gives the same wrong answer (the worst case):
                      P = sum_{k > n/2} C(n, k) p^k (1 - p)^(n - k) (+ half the tie term for even n)
"""
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .lm import sample_continuations

ANSWER_PREFIX = "The answer is"


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    rationale: str = ""


def _check_examples(examples):
    examples = list(examples)
    for i, e in enumerate(examples):
        if not isinstance(e, Example):
            raise TypeError(f"examples[{i}]: expected Example, got {type(e).__name__}")
    return examples


def standard_prompt(examples, question):
    """Few-shot prompt: "Q: ...\\nA: The answer is X.\\n\\n" per exemplar, then "Q: question\\nA:"."""
    shots = "".join(f"Q: {e.question}\nA: {ANSWER_PREFIX} {e.answer}.\n\n" for e in _check_examples(examples))
    return f"{shots}Q: {question}\nA:"


def cot_prompt(examples, question):
    """Chain-of-thought prompt (Wei et al. 2022): each exemplar's answer follows its rationale."""
    examples = _check_examples(examples)
    for i, e in enumerate(examples):
        if not e.rationale:
            raise ValueError(f"examples[{i}]: a chain-of-thought exemplar needs a rationale")
    shots = "".join(f"Q: {e.question}\nA: {e.rationale.strip()} {ANSWER_PREFIX} {e.answer}.\n\n" for e in examples)
    return f"{shots}Q: {question}\nA:"


def zero_shot_cot_prompt(question):
    """Zero-shot CoT (Kojima et al. 2022): the trigger phrase starts the reasoning."""
    return f"Q: {question}\nA: Let's think step by step."


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER = re.compile(re.escape(ANSWER_PREFIX) + r"\s*:?\s*([^\n]*?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)


def normalize_answer(ans):
    """Canonical form for voting: numbers lose commas and trailing zeros ("1,000.0" -> "1000"),
    text is lower-cased, stripped of surrounding punctuation and whitespace."""
    ans = ans.strip().strip("$").strip()
    m = _NUMBER.fullmatch(ans.rstrip("."))
    if m:
        x = float(ans.rstrip(".").replace(",", ""))
        return str(int(x)) if x == int(x) else repr(x)
    return ans.lower().strip(" .,:;!?\"'()")


def extract_answer(text):
    """The answer a reasoning path commits to: the last "The answer is X" (X up to the sentence end),
    else the last number in the text, else None. Returned normalised (normalize_answer)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    found = _ANSWER.findall(text)
    if found and found[-1].strip():
        ans = found[-1].strip()
        m = _NUMBER.match(ans)                 # "42 apples" -> "42"; text answers are kept whole
        return normalize_answer(m.group(0) if m else ans)
    nums = _NUMBER.findall(text)
    return normalize_answer(nums[-1]) if nums else None


def majority_vote(answers):
    """-> (winner or None, Counter of answers). None answers do not vote; ties go to the answer
    that appeared first (by exchangeability, a fair coin between the tied answers)."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None, votes
    first = {}
    for i, a in enumerate(answers):
        if a is not None:
            first.setdefault(a, i)
    return max(votes, key=lambda a: (votes[a], -first[a])), votes


@dataclass
class SelfConsistency:
    answer: object                  # the majority answer (None if no path gave one)
    votes: Counter                  # answer -> count
    paths: list = field(default_factory=list)      # the sampled texts
    answers: list = field(default_factory=list)    # each path's extracted answer


def self_consistency(sample, n, extract=extract_answer):
    """Wang et al. 2023: draw n reasoning paths with sample(i) -> text (i = 0..n-1; a sampler
    closure over a model, or a scripted one in tests), extract each answer, and return the
    majority vote with the evidence."""
    if not callable(sample):
        raise TypeError(f"sample: expected a callable, got {type(sample).__name__}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    paths = [sample(i) for i in range(n)]
    answers = [extract(p) for p in paths]
    winner, votes = majority_vote(answers)
    return SelfConsistency(winner, votes, paths, answers)


def model_sampler(model, tokenizer, prompt, max_new_tokens=64, temperature=0.7, top_p=None, seed=0, stop="\n\n"):
    """sample(i) for self_consistency: the i-th of independent continuations of `prompt` by the
    model (minillm.inference.generate with temperature sampling), cut at `stop`."""
    ids = tokenizer.encode(prompt)
    stop_ids = [tokenizer.encode(stop)] if stop else None
    cache = {}

    def sample(i):
        if i not in cache:   # each path from its own seed: (seed, i) -> a reproducible, independent draw
            out = sample_continuations(model, ids, 1, max_new_tokens, temperature, top_p, seed=[seed, i],
                                       stop=stop_ids)[0]
            text = tokenizer.decode([int(t) for t in out])
            cache[i] = text.split(stop)[0] if stop else text
        return cache[i]
    return sample


def majority_accuracy(p, n):
    """P(majority vote of n paths is right) when each path is independently right with probability p
    and all wrong paths agree (binary vote); ties (even n) are won half the time."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    pk = lambda k: math.comb(n, k) * p ** k * (1.0 - p) ** (n - k)   # Binomial(n, p) pmf
    total = sum(pk(k) for k in range(n // 2 + 1, n + 1))
    if n % 2 == 0:
        total += 0.5 * pk(n // 2)
    return total
