"""Language identification with no download: Unicode script detection first, then a character
n-gram naive Bayes classifier among the languages that share the script (Cavnar & Trenkle 1994,
"N-gram-based text categorization", used n-gram profiles; like langid.py, Lui & Baldwin 2012, this
scores n-gram log-probabilities with naive Bayes instead of their rank distance).

1. Count the letters of each script (regex \\p{Script=...}). Scripts used by one supported language
   decide alone (Greek -> el, Hangul -> ko, Thai -> th, Hebrew -> he, Devanagari -> hi,
   Arabic -> ar; Han with kana -> ja, Han without kana -> zh).
2. Latin (16 languages) and Cyrillic (ru, uk) need the text itself. Each language's profile is
   the counts of character 1-, 2- and 3-grams of its training text (lang_samples.TRAIN, words padded
   with spaces) and of its whole words, a word counting WORD_WEIGHT times (function words -- the,
   und, les -- decide short texts that n-grams alone get wrong: "Assignment statements are used to
   bind names to values." was French at 0.69); a text scores Σ_g log P(g | lang) with add-α
   smoothing, and softmax over the candidates turns the scores into the reported confidence.
Profiles are built from the built-in sentences on first use (a few milliseconds).

Measured on lang_samples.HELD_OUT (sentences never used for training, 26 languages): see
tests/data/test_langid.py, which asserts the figure stated in README. Short inputs (a few words)
and closely related languages not in the list (e.g. Catalan, Slovak, Norwegian) are the weak spots.
`backend="langid"` or `backend="fasttext"` (with `model_path` to lid.176.bin) use those libraries
instead when the user has installed them.
"""
import math
from collections import Counter
from functools import lru_cache

import regex

from .lang_samples import TRAIN

# script -> languages written in it (among the supported ones)
SCRIPTS = {
    "Latin": ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "fi", "pl", "cs", "hu", "tr", "ro",
              "id", "vi"),
    "Cyrillic": ("ru", "uk"),
    "Greek": ("el",), "Arabic": ("ar",), "Hebrew": ("he",), "Devanagari": ("hi",),
    "Hangul": ("ko",), "Thai": ("th",), "Han": ("zh",), "Kana": ("ja",),
}
LANGUAGES = tuple(sorted({c for langs in SCRIPTS.values() for c in langs}))
_SCRIPT_RE = {name: regex.compile(rf"\p{{Script={name}}}") for name in SCRIPTS if name != "Kana"}
_SCRIPT_RE["Kana"] = regex.compile(r"[\p{Script=Hiragana}\p{Script=Katakana}]")
_NON_LETTER = regex.compile(r"[^\p{L}\p{M}]+")
NGRAM_ORDERS = (1, 2, 3)
WORD, WORD_MARK = 0, "\x00"   # whole-word features: order 0, keyed by a mark no text contains
ORDERS = (WORD,) + NGRAM_ORDERS
WORD_WEIGHT = 4       # a whole word counts as much as 4 of its n-grams (see README for the measurement)
ALPHA = 0.5  # add-alpha smoothing of the n-gram probabilities


def script_counts(text):
    """Letters per script: dict script -> count (only scripts with at least one letter)."""
    counts = {name: len(p.findall(text)) for name, p in _SCRIPT_RE.items()}
    return {k: v for k, v in counts.items() if v}


def _order(g):
    """A feature's order: n for a character n-gram, WORD for a whole word (WORD_MARK + word)."""
    return WORD if g[0] == WORD_MARK else len(g)


def _features(text):
    """Character n-grams of the lower-cased words, each word padded with one space per side, and
    the words themselves (short words -- the, und, les, de -- are the surest cue in short text)."""
    words = _NON_LETTER.sub(" ", text.lower()).split()
    grams = Counter()
    for w in words:
        grams[WORD_MARK + w] += WORD_WEIGHT
        w = f" {w} "
        for n in NGRAM_ORDERS:
            for i in range(len(w) - n + 1):
                grams[w[i:i + n]] += 1
    return grams


@lru_cache(maxsize=None)
def _profiles():
    """{lang: (log P(g|lang) dict, log P of an unseen n-gram of each order)}."""
    counts = {lang: _features(text) for lang, text in TRAIN.items()}
    vocab = {n: len({g for c in counts.values() for g in c if _order(g) == n}) for n in ORDERS}
    out = {}
    for lang, c in counts.items():
        total = {n: sum(v for g, v in c.items() if _order(g) == n) for n in ORDERS}
        denom = {n: math.log(total[n] + ALPHA * (vocab[n] + 1)) for n in ORDERS}
        logp = {g: math.log(v + ALPHA) - denom[_order(g)] for g, v in c.items()}
        unseen = {n: math.log(ALPHA) - denom[n] for n in ORDERS}
        out[lang] = (logp, unseen)
    return out


def _naive_bayes(text, candidates):
    feats = _features(text)
    if not feats:
        return candidates[0], 0.0
    profiles = _profiles()
    scores = []
    for lang in candidates:
        logp, unseen = profiles[lang]
        scores.append(sum(k * logp.get(g, unseen[_order(g)]) for g, k in feats.items()))
    best = max(scores)
    z = sum(math.exp(s - best) for s in scores)            # softmax, shifted for stability
    i = scores.index(best)
    return candidates[i], 1.0 / z


def detect_language(text, backend="builtin", model_path=None):
    """-> (ISO 639-1 code, confidence in [0, 1]); ("und", 0.0) when the text has no letters.

    backend: "builtin" (script + n-gram profiles above), "langid" (pip install langid) or
    "fasttext" (pip install fasttext, model_path = lid.176.bin)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    if backend == "langid":
        return _langid_backend(text)
    if backend == "fasttext":
        return _fasttext_backend(text, model_path)
    if backend != "builtin":
        raise ValueError(f"backend: expected 'builtin', 'langid' or 'fasttext', got {backend!r}")
    counts = script_counts(text)
    if not counts:
        return "und", 0.0
    letters = sum(counts.values())
    if counts.get("Kana", 0) and counts["Kana"] >= 0.1 * (counts["Kana"] + counts.get("Han", 0)):
        return "ja", (counts["Kana"] + counts.get("Han", 0)) / letters   # kana only occur in Japanese
    script = max(counts, key=counts.get)
    share = counts[script] / letters
    candidates = SCRIPTS[script]
    if len(candidates) == 1:
        return candidates[0], share
    lang, p = _naive_bayes(text, candidates)
    return lang, share * p


@lru_cache(maxsize=2)
def _langid_model():
    try:  # an optional dependency, imported only when this backend is asked for
        from langid.langid import LanguageIdentifier, model
    except ImportError as e:
        raise ImportError("backend='langid' needs the langid package: pip install langid") from e
    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def _langid_backend(text):
    code, p = _langid_model().classify(text)
    return code, float(p)


@lru_cache(maxsize=2)
def _fasttext_model(model_path):
    try:  # an optional dependency, imported only when this backend is asked for
        import fasttext
    except ImportError as e:
        raise ImportError("backend='fasttext' needs the fasttext package: pip install fasttext") from e
    if model_path is None:
        raise ValueError("model_path: backend='fasttext' needs the path of a language-id model "
                         "such as lid.176.bin")
    return fasttext.load_model(str(model_path))


def _fasttext_backend(text, model_path):
    labels, probs = _fasttext_model(model_path).predict(text.replace("\n", " "), k=1)
    return labels[0].replace("__label__", ""), float(min(probs[0], 1.0))
