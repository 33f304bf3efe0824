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

from ..model import Transformer
from .batch import collate
from .logprobs import model_logprobs, shifted
from .losses import kl_estimate
from .reward import rankings_to_pairs
from .rollout import sample_responses
from .sft import SFTConfig, sft_eval_loss, sft_train

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


# ------------------------------------------------------------------------------ stages on this task
def sft_examples(pairs):
    """(prompt, response) texts -> [(ids (T,), mask (T,))], the loss on the response only."""
    out = []
    for p, r in pairs:
        ids = np.array(encode(p + r), dtype=np.int64)
        mask = np.zeros(len(ids), dtype=np.float32)
        mask[len(p):] = 1.0
        out.append((ids, mask))
    return out


def sft_stage(cfg, seed, steps, rng, log=None):
    """Stage 1 of the RLHF and DPO pipelines: a fresh policy of `cfg`, fine-tuned on 4000 task
    demonstrations (loss on the response only) and scored on 256 held-out ones.
    -> (policy, frozen reference copy, val examples, response loss before, response loss after)"""
    policy = Transformer(cfg, seed=seed)
    train, val = sft_examples(sft_data(4000, rng)), sft_examples(sft_data(256, rng))
    before = sft_eval_loss(policy, val)
    sft_train(policy, train, SFTConfig(lr=3e-3, min_lr=3e-4, warmup_steps=20, steps=steps, batch_size=64,
                                       seed=seed), log=log)
    ref = Transformer(cfg, params={k: v.copy() for k, v in policy.params.items()})
    return policy, ref, val, before, sft_eval_loss(policy, val)


def preference_pairs(policy, prompts, rng, K=4, max_new_tokens=8):
    """The labelling stage: sample K responses per prompt from the policy, rank the distinct ones by
    score (the program is the labeller), expand each ranking to all pairs, drop ties.
    -> [(prompt_ids, chosen_ids, rejected_ids)]"""
    ids = [encode(p) for p in prompts for _ in range(K)]
    responses = sample_responses(policy, ids, max_new_tokens, rng, 1.0, stop_id=STOP)
    pairs = []
    for i, p in enumerate(prompts):
        group = sorted({decode(r) for r in responses[i * K:(i + 1) * K]})
        ranked = sorted(group, key=lambda r: -score(p, r))
        for _, good, bad in rankings_to_pairs(p, ranked):
            if score(p, good) > score(p, bad):
                pairs.append((encode(p), encode(good), encode(bad)))
    return pairs


def evaluate_policy(policy, ref, prompts, rng, max_new_tokens=8):
    """Preference rate of sampled (temperature 1) and greedy responses, share of well-formed samples,
    and KL(π || π_ref) per response estimated on the samples (mean of Σ_t k1 and of Σ_t k3, nats)."""
    ids = [encode(p) for p in prompts]
    sampled = sample_responses(policy, ids, max_new_tokens, rng, 1.0, stop_id=STOP)
    greedy = sample_responses(policy, ids, max_new_tokens, rng, 0.0, stop_id=STOP)
    tokens, resp_mask = collate(ids, sampled)
    _, m = shifted(tokens, resp_mask)
    lp = model_logprobs(policy, tokens).astype(np.float64)
    lr = model_logprobs(ref, tokens).astype(np.float64)
    texts = [decode(r) for r in sampled]
    return {"rate_sampled": preference_rate(prompts, texts),
            "rate_greedy": preference_rate(prompts, [decode(r) for r in greedy]),
            "well_formed": float(np.mean([score(p, t) >= 0 for p, t in zip(prompts, texts)])),
            "kl_k1": float(np.mean(np.sum(kl_estimate(lp, lr, "k1")[0] * m, axis=1))),
            "kl_k3": float(np.mean(np.sum(kl_estimate(lp, lr, "k3")[0] * m, axis=1))),
            "examples": texts[:6]}
