"""Toxicity and safety filtering: a normalised blocklist matcher and a small trainable linear
classifier over hashed n-grams.

Blocklist (as C4 did with the "List of Dirty, Naughty, Obscene, and Otherwise Bad Words", Raffel et
al. 2020, Sec. 2.2), made robust to the usual evasions before matching whole words:
  1. Unicode NFKD with combining marks removed, then case folding        (Fück -> fuck)
  2. look-alike characters mapped to one canonical letter, in the text and in the list alike:
     0/o, 1/l/i/!/|, 3/e, 4/@/a, 5/$/s, 7/+/t, 8/b                      (sh1t, $h!t -> shit)
  3. runs of single characters split by separators joined into one word  (f.u.c.k, b i t c h)
  4. a word also matches with letter runs squeezed to two or one         (fuuuuck -> fuck)
Matching whole (joined) words avoids the "Scunthorpe problem" of substring matching.

Classifier: logistic regression (a linear model over a sparse feature vector) with the hashing
trick (Weinberger et al. 2009, "Feature hashing for large scale multitask learning"): each word
1-/2-gram is hashed to one of D buckets with a random sign, so no vocabulary is stored. Trained by
full-batch Adam on the mean log-loss + L2, vectorised over a CSR matrix. For users who bring
labelled data (e.g. Jigsaw toxic comments); minillm ships no trained weights.
"""
import json
import pathlib
import unicodedata
import zlib

import numpy as np
import regex

from ..io.atomic import atomic_write

RESOURCES = pathlib.Path(__file__).parent / "resources"
_LOOKALIKE = str.maketrans({"0": "o", "1": "i", "l": "i", "!": "i", "|": "i", "3": "e", "4": "a",
                            "@": "a", "5": "s", "$": "s", "7": "t", "+": "t", "8": "b"})
_TOKEN = regex.compile(r"[\p{L}\p{N}@$!|+]+")
_SQUEEZE2 = regex.compile(r"(.)\1{2,}")
_SQUEEZE1 = regex.compile(r"(.)\1+")


def load_word_list(path):
    """Words/phrases from a text file, one per line, '#' comments and blank lines skipped."""
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _fold(s):
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c)).casefold()


def canonical_tokens(text):
    """Normalised words of a text (steps 1-3 of the module docstring): list of str."""
    folded = _fold(text)
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(folded)]
    raw = [folded[a:b].rstrip("!") or folded[a:b] for a, b in spans]  # 'wow!' ends a sentence
    tokens, run, run_sep = [], [], None

    def flush():
        tokens.extend(["".join(run)] if len(run) >= 3 else run)
        run.clear()

    for k, t in enumerate(raw):
        if len(t) > 1:
            flush()
            tokens.append(t)
            continue
        # a run is single characters joined by one and the same separator, so in
        # "a b-a-s-t-a-r-d" the article "a" (followed by a space) stays apart from "b-a-s-..."
        sep = folded[spans[k - 1][1]:spans[k][0]] if k else None
        if not run:
            run.append(t)
            run_sep = None
        elif run_sep is None or sep == run_sep:
            run.append(t)
            run_sep = sep
        else:
            last = run.pop()
            flush()
            run.extend([last, t])
            run_sep = sep
    flush()
    return [t.translate(_LOOKALIKE) for t in tokens]


class Blocklist:
    """Whole-word, normalised blocklist matcher. words: iterable of words or phrases; default:
    resources/blocklist_en.txt."""

    def __init__(self, words=None):
        if words is None:
            words = load_word_list(RESOURCES / "blocklist_en.txt")
        self.phrases = {tuple(canonical_tokens(w)) for w in words if canonical_tokens(w)}
        if not self.phrases:
            raise ValueError("words: the blocklist is empty")
        self.max_len = max(len(p) for p in self.phrases)

    def matches(self, text):
        """The blocklisted words/phrases found in text, in order: list of str (canonical form)."""
        tokens = canonical_tokens(text)
        found, i = [], 0
        while i < len(tokens):
            hit = 0
            for n in range(min(self.max_len, len(tokens) - i), 0, -1):
                gram = tokens[i:i + n]
                variants = {tuple(gram), tuple(_SQUEEZE2.sub(r"\1\1", t) for t in gram),
                            tuple(_SQUEEZE1.sub(r"\1", t) for t in gram)}
                if variants & self.phrases:
                    hit = n
                    break
            if hit:
                found.append(" ".join(tokens[i:i + hit]))
                i += hit
            else:
                i += 1
        return found


class BlocklistFilter:
    """Drop a document with at least min_matches blocklisted words, or whose share of blocklisted
    words reaches max_ratio."""

    def __init__(self, words=None, word_files=(), min_matches=1, max_ratio=1.0):
        words = list(words) if words is not None else ([] if word_files else None)
        for f in word_files:
            words.extend(load_word_list(f))
        self.blocklist = Blocklist(words)
        self.min_matches, self.max_ratio = min_matches, max_ratio

    def check(self, text):
        found = self.blocklist.matches(text)
        if found and len(found) >= self.min_matches:
            return "blocklist"
        if found and len(found) / max(len(text.split()), 1) >= self.max_ratio:
            return "blocklist_ratio"
        return None


# --- hashed n-gram logistic regression -----------------------------------------------------------

class HashedNgramClassifier:
    """P(toxic | text) = sigmoid(w · φ(text) + b), φ = signed hashed counts of word n-grams.
    w: (D,) float32, D = 2**n_bits."""

    def __init__(self, n_bits=18, ngrams=(1, 2)):
        if not isinstance(n_bits, int) or not 4 <= n_bits <= 26:
            raise ValueError(f"n_bits: expected an int in [4, 26], got {n_bits!r}")
        self.n_bits, self.ngrams = n_bits, tuple(ngrams)
        self.w = np.zeros(2**n_bits, dtype=np.float32)                        # (D,)
        self.b = 0.0

    def features(self, text):
        """-> (indices (F,) int64, values (F,) float32): signed counts, L2-normalised."""
        toks = canonical_tokens(text)
        idx = []
        for n in self.ngrams:
            for i in range(len(toks) - n + 1):
                h = zlib.crc32(" ".join(toks[i:i + n]).encode("utf-8") + bytes([n]))
                idx.append(h)
        if not idx:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        h = np.array(idx, dtype=np.int64)
        sign = np.where(h & (1 << 31), -1.0, 1.0).astype(np.float32)           # top bit: the sign
        buckets = h & (2**self.n_bits - 1)
        uniq, inv = np.unique(buckets, return_inverse=True)
        vals = np.zeros(len(uniq), np.float32)
        np.add.at(vals, inv, sign)
        norm = np.linalg.norm(vals)
        return uniq, vals / norm if norm > 0 else vals

    def _csr(self, texts):
        feats = [self.features(t) for t in texts]
        indptr = np.zeros(len(feats) + 1, dtype=np.int64)                       # (N + 1,)
        np.cumsum([len(f[0]) for f in feats], out=indptr[1:])
        indices = np.concatenate([f[0] for f in feats] + [np.zeros(0, np.int64)])
        values = np.concatenate([f[1] for f in feats] + [np.zeros(0, np.float32)])
        return indptr, indices, values

    @staticmethod
    def _scores(w, b, indptr, indices, values):
        row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))            # (nnz,)
        return np.bincount(row, weights=w[indices] * values, minlength=len(indptr) - 1) + b

    def fit(self, texts, labels, epochs=200, lr=0.1, l2=1e-4):
        """Full-batch Adam on mean log-loss + l2/2 |w|^2. labels: (N,) of 0/1. Returns self."""
        y = np.asarray(labels, dtype=np.float64)                                 # (N,)
        if y.shape != (len(texts),) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"labels: expected {len(texts)} values in {{0, 1}}, got shape {y.shape}")
        indptr, indices, values = self._csr(texts)
        row = np.repeat(np.arange(len(texts)), np.diff(indptr))                 # (nnz,)
        w = np.zeros(2**self.n_bits, dtype=np.float64)
        b = 0.0
        m, v, mb, vb = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for t in range(1, epochs + 1):
            p = 1.0 / (1.0 + np.exp(-self._scores(w, b, indptr, indices, values)))  # (N,)
            r = (p - y) / len(y)                                   # dL/dscore for the mean loss
            gw = np.bincount(indices, weights=values * r[row], minlength=w.size) + l2 * w
            gb = r.sum()
            m = beta1 * m + (1 - beta1) * gw
            v = beta2 * v + (1 - beta2) * gw * gw
            mb = beta1 * mb + (1 - beta1) * gb
            vb = beta2 * vb + (1 - beta2) * gb * gb
            c1, c2 = 1 - beta1**t, 1 - beta2**t
            w -= lr * (m / c1) / (np.sqrt(v / c2) + eps)
            b -= lr * (mb / c1) / (np.sqrt(vb / c2) + eps)
        self.w, self.b = w.astype(np.float32), float(b)
        return self

    def predict_proba(self, texts):
        """(N,) float64 probabilities of the positive (toxic) class."""
        s = self._scores(self.w.astype(np.float64), self.b, *self._csr(list(texts)))
        return 1.0 / (1.0 + np.exp(-s))

    def save(self, path):
        meta = json.dumps({"n_bits": self.n_bits, "ngrams": list(self.ngrams), "b": self.b})
        with atomic_write(path) as f:
            np.savez(f, w=self.w, meta=np.array(meta))

    @classmethod
    def load(cls, path):
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                clf = cls(meta["n_bits"], meta["ngrams"])
                w = z["w"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: not a HashedNgramClassifier file ({e})") from e
        if w.shape != clf.w.shape:
            raise ValueError(f"{path}: weights have shape {w.shape}, expected {clf.w.shape}")
        clf.w, clf.b = w.astype(np.float32), float(meta["b"])
        return clf


class ClassifierFilter:
    """Drop documents the classifier scores at or above threshold."""

    def __init__(self, classifier, threshold=0.5):
        self.classifier, self.threshold = classifier, threshold

    def check(self, text):
        return "toxicity_classifier" if self.classifier.predict_proba([text])[0] >= self.threshold else None
