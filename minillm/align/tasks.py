"""A synthetic preference task whose preference a program can check, for the end-to-end RLHF and DPO
examples and tests (the role human labellers play in InstructGPT).

Prompt (6 bytes):  "v:xyz=" or "c:xyz="  -- an instruction letter and three random letters (noise).
Response:          3 to 6 lowercase letters, then "\\n".
Constraint:        "v" asks for vowels only, "c" for consonants only.

The SFT demonstrations teach the format but not the constraint: each letter is a vowel with
probability 1/2 whatever the instruction, so an SFT model satisfies it only ~6% of the time
(E[2^-n] over n = 3..6). A response is preferred when a larger share of its letters obeys the
instruction (well-formed beats malformed); `satisfied` is the strict check reported as the
preference rate. Byte-level ids (vocabulary 256), so any tokenizer-free tiny model can play.
"""
import numpy as np

VOWELS = "aeiou"
CONSONANTS = "bcdfghklmnprst"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
STOP = ord("\n")
MIN_LEN, MAX_LEN = 3, 6


def make_prompt(rng):
    kind = "v" if rng.random() < 0.5 else "c"
    noise = "".join(rng.choice(list(LETTERS), 3))
    return f"{kind}:{noise}="


def demo_response(rng):
    """An SFT demonstration: the right format, letters vowel/consonant with probability 1/2 each."""
    n = int(rng.integers(MIN_LEN, MAX_LEN + 1))
    letters = [rng.choice(list(VOWELS)) if rng.random() < 0.5 else rng.choice(list(CONSONANTS)) for _ in range(n)]
    return "".join(letters) + "\n"


def encode(text):
    return list(text.encode("utf-8"))


def decode(ids):
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def _letters(response):
    """The letters of a well-formed response, or None if the format is broken."""
    if not response.endswith("\n"):
        return None
    body = response[:-1]
    if not (MIN_LEN <= len(body) <= MAX_LEN) or not all(ch in LETTERS for ch in body):
        return None
    return body


def score(prompt, response):
    """Share of letters obeying the instruction, in [0, 1]; -1 for a malformed response."""
    body = _letters(response)
    if body is None:
        return -1.0
    wanted = VOWELS if prompt[0] == "v" else CONSONANTS
    return sum(ch in wanted for ch in body) / len(body)


def satisfied(prompt, response):
    """The checkable constraint: well-formed and every letter of the requested kind."""
    return score(prompt, response) == 1.0


def preference_rate(prompts, responses):
    return float(np.mean([satisfied(p, r) for p, r in zip(prompts, responses)]))


def sft_data(n, rng):
    """n (prompt, demonstration) text pairs."""
    return [(make_prompt(rng), demo_response(rng)) for _ in range(n)]


def label_pair(prompt, a, b):
    """(chosen, rejected) by score, or None on a tie (no preference to learn from)."""
    sa, sb = score(prompt, a), score(prompt, b)
    if sa == sb:
        return None
    return (a, b) if sa > sb else (b, a)
