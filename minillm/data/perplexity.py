"""Perplexity filtering (Wenzek et al. 2020, "CCNet", Sec. 3.3): score each document with a language
model trained on reference text and keep a percentile band of perplexity -- high perplexity marks
gibberish, spam and boilerplate lists, very low perplexity marks repeated templates.

The model here is a character n-gram LM with interpolated Kneser-Ney smoothing (Kneser & Ney 1995;
Chen & Goodman 1998, "An empirical study of smoothing techniques", eq. 26-27):

    P_k(w | h) = max(c_k(h w) - D, 0) / c_k(h ·)  +  D · N_{1+}(h ·) / c_k(h ·) · P_{k-1}(w | h')

where h' drops the oldest character of h, c_k are raw counts at the highest order and continuation
counts N_{1+}(· h w) (the number of distinct characters seen before h w) at lower orders, and P_0 is
uniform over the training alphabet plus one unknown symbol. CCNet used a 5-gram KenLM model over
SentencePiece tokens; a character model needs no tokenizer and is what `CharNGramLM` gives.

Any object with `log_prob(text) -> float` (mean natural-log probability per character or per
token, higher = more fluent) can replace it, e.g. a wrapper around a minillm Transformer.
"""
import math
from collections import Counter

import numpy as np

from ..run_folder import latest_run_checkpoint, load_run

BOS = "\x02"  # padding before the first character, so every character has a full context


class CharNGramLM:
    """Character n-gram LM with interpolated Kneser-Ney smoothing. order: n (context n - 1)."""

    def __init__(self, order=5, discount=0.75):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order: expected a positive int, got {order!r}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount: expected a value in (0, 1), got {discount!r}")
        self.order, self.D = order, discount
        self.counts = [None] + [Counter() for _ in range(order)]   # counts[k][h + w], len(h) = k-1
        self.ctx_total = [None] + [Counter() for _ in range(order)]  # c_k(h ·)
        self.ctx_types = [None] + [Counter() for _ in range(order)]  # N_1+(h ·)
        self.vocab = set()

    @classmethod
    def train(cls, texts, order=5, discount=0.75):
        lm = cls(order, discount)
        top = lm.counts[order]
        for text in texts:
            padded = BOS * (order - 1) + text
            lm.vocab.update(text)
            for i in range(order - 1, len(padded)):
                top[padded[i - order + 1:i + 1]] += 1
        # lower orders: continuation counts, N_1+(· g) = distinct left extensions of g
        for k in range(order - 1, 0, -1):
            for gram in lm.counts[k + 1]:
                lm.counts[k][gram[1:]] += 1
        for k in range(1, order + 1):
            for gram, c in lm.counts[k].items():
                lm.ctx_total[k][gram[:-1]] += c
                lm.ctx_types[k][gram[:-1]] += 1
        return lm

    def _contexts(self):
        # per order: context h -> (1 / c_k(h ·), D · N_1+(h ·) / c_k(h ·)), built on first use
        if getattr(self, "_ctx", None) is None:
            self._ctx = [None] + [{h: (1.0 / t, self.D * self.ctx_types[k][h] / t)
                                   for h, t in self.ctx_total[k].items()}
                                  for k in range(1, self.order + 1)]
        return self._ctx

    def _char_log_prob(self, context, w):
        ctx = self._contexts()
        p = 1.0 / (len(self.vocab) + 1)                      # P_0: uniform, + an unknown symbol
        for k in range(1, self.order + 1):                  # from unigram up to the full order
            h = context[len(context) - (k - 1):] if k > 1 else ""
            c = ctx[k].get(h)
            if c is None:
                break                                        # unseen context: longer ones are too
            inv_total, backoff = c
            p = max(self.counts[k].get(h + w, 0) - self.D, 0.0) * inv_total + backoff * p
        return math.log(p)

    def log_prob(self, text):
        """Mean natural-log probability per character (0.0 for an empty text)."""
        if not text:
            return 0.0
        n = self.order
        padded = BOS * (n - 1) + text
        memo = {}                                            # repeated n-grams are scored once
        total = 0.0
        for i in range(n - 1, len(padded)):
            gram = padded[i - n + 1:i + 1]
            lp = memo.get(gram)
            if lp is None:
                lp = memo[gram] = self._char_log_prob(gram[:-1], gram[-1])
            total += lp
        return total / len(text)

    def perplexity(self, text):
        """exp(-mean log-prob per character)."""
        return math.exp(-self.log_prob(text))


class TransformerScorer:
    """A minillm Transformer as the perplexity model: log_prob(text) is the mean natural-log
    probability per token of the text under the model (the model's own next-token loss, negated),
    scored in windows of the model's max_seq_len. Build it from a `minillm train` run folder with
    TransformerScorer.from_run(run_dir)."""

    def __init__(self, model, tokenizer, max_tokens=4096):
        self.model, self.tokenizer, self.max_tokens = model, tokenizer, int(max_tokens)

    @classmethod
    def from_run(cls, run_dir, **kw):
        if latest_run_checkpoint(run_dir) is None:
            raise FileNotFoundError(f"{run_dir}: no checkpoint (run `minillm train --out {run_dir}` first)")
        return cls(*load_run(run_dir), **kw)

    def log_prob(self, text):
        ids = np.asarray(self.tokenizer.encode(text)[: self.max_tokens], dtype=np.int64)   # (n,)
        if len(ids) < 2:
            return 0.0
        T = self.model.config.max_seq_len
        total, count = 0.0, 0
        for s in range(0, len(ids) - 1, T):
            x, y = ids[s:s + T], ids[s + 1:s + T + 1]
            x = x[:len(y)]
            total += self.model.loss(x[None, :], y[None, :]) * len(y)
            count += len(y)
        return -total / count


class PerplexityBand:
    """Keep documents whose perplexity lies between the low_pct and high_pct percentiles of a
    calibration sample (fit), or between explicit bounds min_ppl / max_ppl."""

    def __init__(self, scorer, low_pct=0.0, high_pct=90.0, min_ppl=None, max_ppl=None):
        if not hasattr(scorer, "log_prob"):
            raise TypeError(f"scorer: expected an object with log_prob(text), got {type(scorer).__name__}")
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError(f"low_pct, high_pct: expected 0 <= low < high <= 100, got {low_pct}, {high_pct}")
        self.scorer, self.low_pct, self.high_pct = scorer, low_pct, high_pct
        self.min_ppl, self.max_ppl = min_ppl, max_ppl

    def perplexity(self, text):
        return math.exp(-self.scorer.log_prob(text))

    def fit(self, texts):
        """Set the bounds from the percentiles of the calibration texts' perplexities."""
        ppl = np.array([self.perplexity(t) for t in texts], dtype=np.float64)   # (n,)
        if ppl.size == 0:
            raise ValueError("texts: need at least one calibration text to fit the percentile band")
        self.min_ppl = float(np.percentile(ppl, self.low_pct)) if self.low_pct > 0 else 0.0
        self.max_ppl = float(np.percentile(ppl, self.high_pct)) if self.high_pct < 100 else math.inf
        return self

    def check(self, text):
        if self.min_ppl is None or self.max_ppl is None:
            raise RuntimeError("PerplexityBand: call fit(texts) or give min_ppl and max_ppl first")
        ppl = self.perplexity(text)
        if ppl < self.min_ppl:
            return "perplexity_too_low"
        if ppl > self.max_ppl:
            return "perplexity_too_high"
        return None
