"""Turning next-token logits into a token: logits processors and the sampler.

A logits processor maps logits (..., V) to logits of the same shape, masking excluded tokens with
-inf; processors compose left to right, and sampling draws from softmax of the result:
  temperature      z / T                          (Ackley et al. 1985; T -> 0 is greedy, argmax z)
  top-k            keep the k largest z           (Fan et al. 2018, "Hierarchical Neural Story Generation")
  top-p (nucleus)  keep the smallest set of tokens, most probable first, whose mass is >= p
                   (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", eq. 2-3)
  min-p            keep tokens with prob >= p_min * max prob (Nguyen et al. 2024, "Turning Up the Heat")
  repetition pen.  z_i / r if z_i > 0 else z_i * r for every token i already in the context
                   (Keskar et al. 2019, CTRL, Sec. 4.1)
  presence/freq.   z_i - c_i * alpha_frequency - [c_i > 0] * alpha_presence, c_i = times token i
                   was generated so far (OpenAI API reference, "frequency and presence penalties")
The order used by `processors(...)` is the one Hugging Face applies: repetition penalty, temperature,
top-k, top-p, min-p; the OpenAI penalties come right after the repetition penalty. Everything runs in float64 so that "mass >= p" is decided without float32
rounding. This module knows nothing of models; generate.py, speculative.py and engine.py call it.
"""
from dataclasses import dataclass

import numpy as np

from ..nn.softmax import log_softmax


def softmax(z):  # (..., V) -> (..., V) float64
    """Probabilities from logits; -inf logits get probability exactly 0."""
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=-1, keepdims=True)                                 # (..., 1)
    m = np.where(np.isfinite(m), m, 0.0)  # a row of all -inf stays all-zero instead of NaN
    e = np.exp(z - m)                     # subtract the max: exp overflows for large logits
    return e / np.sum(e, axis=-1, keepdims=True)


def _check_logits(z):
    z = np.asarray(z, dtype=np.float64)
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ValueError(f"logits: expected shape (..., V) with V >= 1, got {z.shape}")
    if np.isnan(z).any():
        raise ValueError("logits: contain NaN")
    return z


@dataclass(frozen=True)
class Temperature:
    """z / T. T must be > 0 (T = 0 means greedy, handled by sample())."""
    t: float

    def __post_init__(self):
        if not (np.isfinite(self.t) and self.t > 0):
            raise ValueError(f"temperature: expected a finite value > 0, got {self.t!r}")

    def __call__(self, z, context=None):  # (..., V) -> (..., V)
        return _check_logits(z) / self.t


@dataclass(frozen=True)
class TopK:
    """Keep the k largest logits (ties at the k-th value are all kept: which one of equal logits to
    drop is arbitrary, and keeping them never removes probability mass unfairly)."""
    k: int

    def __post_init__(self):
        if not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"top_k: expected an int >= 1, got {self.k!r}")

    def __call__(self, z, context=None):  # (..., V) -> (..., V)
        z = _check_logits(z)
        if self.k >= z.shape[-1]:
            return z
        kth = -np.partition(-z, self.k - 1, axis=-1)[..., self.k - 1:self.k]  # (..., 1) k-th largest
        return np.where(z >= kth, z, -np.inf)


@dataclass(frozen=True)
class TopP:
    """Nucleus: sort probabilities in decreasing order and keep the shortest prefix whose mass
    reaches p (Holtzman et al. 2020, eq. 2: the smallest V^(p) with sum_{x in V^(p)} P(x) >= p)."""
    p: float

    def __post_init__(self):
        if not (0.0 < self.p <= 1.0):
            raise ValueError(f"top_p: expected a value in (0, 1], got {self.p!r}")

    def __call__(self, z, context=None):  # (..., V) -> (..., V)
        z = _check_logits(z)
        probs = softmax(z)                                                 # (..., V)
        order = np.argsort(-probs, axis=-1, kind="stable")                 # (..., V) descending
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p   # mass of the tokens ranked above each one
        # a token is needed while the mass before it is still short of p; the first token always is.
        # subtle: with p = 1 rounding can leave cumsum at 1 - 1e-16, so also stop at zero-prob tokens
        keep_sorted = (before < self.p) & (sorted_p > 0)
        keep_sorted[..., 0] = True
        keep = np.empty_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        return np.where(keep, z, -np.inf)


@dataclass(frozen=True)
class MinP:
    """Keep tokens whose probability is at least p_min times that of the most likely token."""
    p_min: float

    def __post_init__(self):
        if not (0.0 <= self.p_min <= 1.0):
            raise ValueError(f"min_p: expected a value in [0, 1], got {self.p_min!r}")

    def __call__(self, z, context=None):  # (..., V) -> (..., V)
        z = _check_logits(z)
        # p_i >= p_min * p_max  <=>  z_i >= z_max + log(p_min): no softmax needed
        bound = np.max(z, axis=-1, keepdims=True) + (np.log(self.p_min) if self.p_min > 0 else -np.inf)
        return np.where(z >= bound, z, -np.inf)


@dataclass(frozen=True)
class RepetitionPenalty:
    """CTRL's penalty: for each token already in `context`, divide a positive logit by r and
    multiply a negative one by r (so r > 1 always makes the repeat less likely)."""
    r: float

    def __post_init__(self):
        if not (np.isfinite(self.r) and self.r > 0):
            raise ValueError(f"repetition_penalty: expected a finite value > 0, got {self.r!r}")

    def __call__(self, z, context=None):  # (V,) -> (V,); context: token ids seen so far
        z = _check_logits(z).copy()
        if context is None or len(context) == 0:
            return z
        if z.ndim != 1:
            raise ValueError(f"logits: repetition penalty takes one row (V,), got {z.shape}")
        seen = np.unique(np.asarray(context, dtype=np.int64))
        if seen.min() < 0 or seen.max() >= z.shape[-1]:
            raise ValueError(f"context: ids must lie in [0, {z.shape[-1]}), got [{seen.min()}, {seen.max()}]")
        zs = z[seen]
        z[seen] = np.where(zs > 0, zs / self.r, zs * self.r)
        return z


@dataclass(frozen=True)
class CountPenalty:
    """OpenAI's presence and frequency penalties over the GENERATED tokens only: context[start:]
    (start = prompt length). z_i -= frequency * c_i + presence * [c_i > 0]; both in [-2, 2]."""
    presence: float = 0.0
    frequency: float = 0.0
    start: int = 0

    def __post_init__(self):
        for name, v in (("presence_penalty", self.presence), ("frequency_penalty", self.frequency)):
            if not (np.isfinite(v) and -2.0 <= v <= 2.0):
                raise ValueError(f"{name}: expected a value in [-2, 2], got {v!r}")

    def __call__(self, z, context=None):  # (V,) -> (V,); context: prompt + generated ids
        z = _check_logits(z)
        if context is None or len(context) <= self.start:
            return z
        if z.ndim != 1:
            raise ValueError(f"logits: presence/frequency penalties take one row (V,), got {z.shape}")
        c = np.bincount(np.asarray(context[self.start:], dtype=np.int64), minlength=z.shape[-1])  # (V,)
        if c.shape[0] != z.shape[-1]:
            raise ValueError(f"context: ids must lie in [0, {z.shape[-1]}), got max {len(c) - 1}")
        return z - self.frequency * c - self.presence * (c > 0)


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_settings(temperature, top_k, top_p, min_p, repetition_penalty, penalty_start):
    """Types and finiteness of the sampling settings (the processors check their ranges)."""
    # NaN fails every comparison: unchecked, it would silently sample at T = 1
    if not _is_number(temperature) or not (np.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature: expected a finite value >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))):
        raise ValueError(f"top_k: expected None or an int >= 1, got {top_k!r}")
    for name, v in (("top_p", top_p), ("min_p", min_p), ("repetition_penalty", repetition_penalty)):
        if v is not None and (not _is_number(v) or not np.isfinite(v)):
            raise ValueError(f"{name}: expected None or a finite number, got {v!r}")
    if isinstance(penalty_start, bool) or not isinstance(penalty_start, (int, np.integer)) or penalty_start < 0:
        raise ValueError(f"penalty_start: expected an int >= 0, got {penalty_start!r}")


def processors(temperature=1.0, top_k=None, top_p=None, min_p=None, repetition_penalty=None,
               presence_penalty=0.0, frequency_penalty=0.0, penalty_start=0):
    """The list of processors for these settings, in Hugging Face's order. temperature 0 (greedy)
    contributes no processor: sample() takes the argmax of the processed logits instead.
    penalty_start: how many leading context ids (the prompt) the OpenAI penalties ignore."""
    _check_settings(temperature, top_k, top_p, min_p, repetition_penalty, penalty_start)
    out = []
    if repetition_penalty is not None and repetition_penalty != 1.0:
        out.append(RepetitionPenalty(float(repetition_penalty)))
    if presence_penalty or frequency_penalty:
        out.append(CountPenalty(float(presence_penalty or 0.0), float(frequency_penalty or 0.0),
                                int(penalty_start)))
    if temperature > 0 and temperature != 1.0:
        out.append(Temperature(float(temperature)))
    if top_k is not None:
        out.append(TopK(top_k))
    if top_p is not None:
        out.append(TopP(float(top_p)))
    if min_p is not None:
        out.append(MinP(float(min_p)))
    return out


def apply(procs, z, context=None):  # (..., V) -> (..., V) float64
    """Run the processors left to right."""
    z = _check_logits(z)
    for proc in procs:
        z = proc(z, context)
    return z


@dataclass
class Sampler:
    """One request's decoding settings and its random stream. probs() is the distribution the next
    token is drawn from (a one-hot at the argmax when greedy); sample() draws from it."""
    temperature: float = 0.0
    top_k: int = None
    top_p: float = None
    min_p: float = None
    repetition_penalty: float = None
    seed: int = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_start: int = 0           # prompt length: presence/frequency count only what follows

    def __post_init__(self):
        self.procs = processors(self.temperature, self.top_k, self.top_p, self.min_p,
                                self.repetition_penalty, self.presence_penalty,
                                self.frequency_penalty, self.penalty_start)
        self.rng = np.random.default_rng(self.seed)

    @property
    def greedy(self):
        return self.temperature == 0

    def probs(self, logits, context=None):  # (V,) -> (V,) float64, sums to 1
        z = apply(self.procs, logits, context)
        if self.greedy:
            p = np.zeros(z.shape, dtype=np.float64)
            p[int(np.argmax(z))] = 1.0
            return p
        return softmax(z)

    @property
    def plain_argmax(self):
        """True when sample() is the logits' argmax itself (greedy, no processors)."""
        return self.greedy and not self.procs

    def sample(self, logits, context=None, argmax=None):  # (V,) -> int
        """The next token. argmax: the logits' np.argmax when the caller has it already (-1 when they
        hold NaN, as csrc/decode.c's decode_run finds it), taken as is when plain_argmax."""
        if self.plain_argmax and argmax is not None:
            if argmax < 0:
                raise ValueError("logits: contain NaN")
            return int(argmax)
        if self.plain_argmax:                # plain argmax: the float64 copy apply() makes is not needed
            z = np.asarray(logits)
            if z.ndim < 1 or z.shape[-1] < 1:
                raise ValueError(f"logits: expected shape (..., V) with V >= 1, got {z.shape}")
            i = int(np.argmax(z))            # argmax stops at the first NaN: one pass finds both
            if z.flat[i] != z.flat[i]:
                raise ValueError("logits: contain NaN")
            return i
        z = apply(self.procs, logits, context)
        if self.greedy:
            return int(np.argmax(z))
        return draw(softmax(z), self.rng)


def top_logprobs(logits, token, k):  # (V,), int, int -> (float, (k,) int64, (k,) float64)
    """The model's log-probability of `token` and the k most likely tokens with theirs (most
    likely first; equal log-probs in id order), all from the unprocessed logits."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64))                # (V,) float64
    top = np.argsort(-lp, kind="stable")[:k]                              # (k,)
    return float(lp[token]), top.astype(np.int64), lp[top]


def draw(p, rng):  # (V,) float64 probabilities -> int
    """Inverse-CDF sampling from one probability vector with a single uniform draw. (rng.choice
    re-checks that p sums to 1 within 1e-8 and is slower; this is exact up to the last ulp.)"""
    c = np.cumsum(p)                                                     # (V,)
    i = int(np.searchsorted(c, rng.random() * c[-1], side="right"))
    i = min(i, len(p) - 1)
    while p[i] == 0 and i > 0:  # u landed exactly on a boundary next to a zero-probability token
        i -= 1
    return i


def sample(logits, rng=None, temperature=0.0, top_k=None, top_p=None, min_p=None,
           repetition_penalty=None, context=None):  # (V,) -> int
    """One token from logits (V,) with the given settings; rng: np.random.Generator (needed unless
    temperature is 0)."""
    z = apply(processors(temperature, top_k, top_p, min_p, repetition_penalty), logits, context)
    if temperature == 0:
        return int(np.argmax(z))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected numpy.random.Generator when temperature > 0, got {type(rng).__name__}")
    return draw(softmax(z), rng)
