"""Training a Unigram LM tokenizer (Kudo 2018, Sec. 3.2), following SentencePiece's trainer:

1. Cut the corpus into words (a space starts a word; with split_digits every ASCII digit is its own
   word) and count them. Characters covering `character_coverage` of the corpus are "required":
   always in the vocabulary; rarer ones are unknown (byte fallback at encode time).
2. Seed vocabulary: the most frequent substrings (up to max_piece_length characters) scored by
   frequency x length, plus the required characters. Substrings are found by hashing every
   (position, length) of every word at once with a polynomial rolling hash in NumPy.
3. EM (Sec. 3.2, eqs. 3-4): the E-step runs forward-backward over each word's lattice to get the
   expected count of every piece; the M-step sets log p(x) = digamma(c(x)) - digamma(sum c)
   (SentencePiece's Bayesian variant) and drops pieces expected fewer than 0.5 times.
4. Pruning: for each piece, the loss of likelihood if it were removed and its occurrences were
   segmented by the best alternative (Viterbi over the piece's own string without it);
   keep the max(target, 75%) pieces with the highest loss, and repeat 3-4 until the target is met.

The lattice loops (forward-backward, Viterbi counts, alternatives) are Numba kernels over flat edge
arrays: edge k of word w covers characters [e_start[k], e_end[k]) with piece e_piece[k]; a word's
edges are sorted by end so one left-to-right sweep is a valid topological order.
"""
import collections
import math

import numba
import numpy as np
import regex

from .patterns import text_chunks
from .sentencepiece_model import BYTE, CONTROL, NORMAL, UNK_PENALTY, UNKNOWN

WORD = r" ?[^ ]+| "
WORD_SPLIT_DIGITS = r"[0-9]| ?[^ 0-9]+| "
_HASH_BASE = np.uint64(0x100000001B3)


@numba.njit(cache=True)
def _logaddexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


@numba.njit(cache=True)
def _digamma(x):
    """psi(x) by recurrence to x >= 7 and the asymptotic series (as sentencepiece's trainer)."""
    result = 0.0
    while x < 7.0:
        result -= 1.0 / x
        x += 1.0
    x -= 0.5
    xx = 1.0 / x
    xx2 = xx * xx
    xx4 = xx2 * xx2
    return result + math.log(x) + xx2 / 24.0 - 7.0 / 960.0 * xx4 + 31.0 / 8064.0 * xx4 * xx2 - 127.0 / 30720.0 * xx4 * xx4


@numba.njit(cache=True)
def _e_step(edge_off, e_start, e_end, e_piece, word_len, word_freq, logp, alive, n_slots):
    """Expected piece counts sum_w f_w * P(edge | word w) and the log likelihood sum_w f_w log P(w)."""
    counts = np.zeros(n_slots, dtype=np.float64)                  # (P+1,)
    max_len = word_len.max() if len(word_len) else 0
    alpha = np.empty(max_len + 1, dtype=np.float64)              # log forward sums
    beta = np.empty(max_len + 1, dtype=np.float64)               # log backward sums
    objective = 0.0
    for w in range(len(word_len)):
        n, a0, a1 = word_len[w], edge_off[w], edge_off[w + 1]
        alpha[: n + 1] = -np.inf
        beta[: n + 1] = -np.inf
        alpha[0] = 0.0
        beta[n] = 0.0
        for k in range(a0, a1):
            p = e_piece[k]
            if alive[p]:
                alpha[e_end[k]] = _logaddexp(alpha[e_end[k]], alpha[e_start[k]] + logp[p])
        for k in range(a1 - 1, a0 - 1, -1):
            p = e_piece[k]
            if alive[p]:
                beta[e_start[k]] = _logaddexp(beta[e_start[k]], beta[e_end[k]] + logp[p])
        z = alpha[n]
        for k in range(a0, a1):
            p = e_piece[k]
            if alive[p]:
                counts[p] += word_freq[w] * math.exp(alpha[e_start[k]] + logp[p] + beta[e_end[k]] - z)
        objective += word_freq[w] * z
    return counts, objective


@numba.njit(cache=True)
def _viterbi_counts(edge_off, e_start, e_end, e_piece, word_len, word_freq, logp, alive, n_slots):
    """How often each piece is used by the Viterbi segmentations of the words (weighted)."""
    freq = np.zeros(n_slots, dtype=np.float64)
    max_len = word_len.max() if len(word_len) else 0
    best = np.empty(max_len + 1, dtype=np.float64)
    back = np.empty(max_len + 1, dtype=np.int64)
    for w in range(len(word_len)):
        n = word_len[w]
        best[: n + 1] = -np.inf
        best[0] = 0.0
        for k in range(edge_off[w], edge_off[w + 1]):
            p = e_piece[k]
            if alive[p] and best[e_start[k]] + logp[p] > best[e_end[k]]:
                best[e_end[k]] = best[e_start[k]] + logp[p]
                back[e_end[k]] = k
        e = n
        while e > 0:
            k = back[e]
            freq[e_piece[k]] += word_freq[w]
            e = e_start[k]
    return freq


@numba.njit(cache=True)
def _alternatives(edge_off, e_start, e_end, e_piece, rep_word, rep_start, rep_len, logp, alive, max_len):
    """For each piece i (a substring rep_len[i] long at rep_start[i] of word rep_word[i]): the
    Viterbi segmentation of that substring that does not use i. Row i lists its pieces, -1 padded."""
    n_pieces = len(rep_word)
    out = np.full((n_pieces, max_len), -1, dtype=np.int64)      # (P, max_len)
    best = np.empty(max_len + 1, dtype=np.float64)
    back = np.empty(max_len + 1, dtype=np.int64)
    for i in range(n_pieces):
        if not alive[i] or rep_len[i] <= 1:
            continue
        w, s0, n = rep_word[i], rep_start[i], rep_len[i]
        best[: n + 1] = -np.inf
        best[0] = 0.0
        for k in range(edge_off[w], edge_off[w + 1]):
            s, e, p = e_start[k] - s0, e_end[k] - s0, e_piece[k]
            if s < 0 or e > n or p == i or not alive[p]:
                continue
            if best[s] + logp[p] > best[e]:
                best[e] = best[s] + logp[p]
                back[e] = k
        if best[n] == -np.inf:
            continue
        e, j = n, 0
        while e > 0:
            k = back[e]
            out[i, j] = e_piece[k]
            j += 1
            e = e_start[k] - s0
    return out


@numba.njit(cache=True)
def _m_step(expected, alive, always):
    """log p(x) = digamma(c(x)) - digamma(sum c) over the surviving pieces (Kudo 2018 eq. 4 with
    sentencepiece's Bayesian digamma); pieces expected fewer than 0.5 times die unless required."""
    n = len(expected)
    c = np.zeros(n, dtype=np.float64)
    for i in range(n):
        if alive[i] and (expected[i] >= 0.5 or always[i]):
            c[i] = max(expected[i], 0.5)  # required characters keep at least half an occurrence
        else:
            alive[i] = False
    log_total = _digamma(c.sum())
    logp = np.full(n, -np.inf, dtype=np.float64)
    for i in range(n):
        if alive[i]:
            logp[i] = _digamma(c[i]) - log_total
    return logp


@numba.njit(cache=True)
def _prune_loss(freq, alts, alive, always):
    """Loss of likelihood if piece i were removed and its Viterbi occurrences re-segmented into its
    alternative pieces (sentencepiece's PruneSentencePieces): -inf if unused, +inf if no alternative."""
    n = len(freq)
    total = freq.sum()
    loss = np.full(n, -np.inf, dtype=np.float64)
    for i in range(n):
        if not alive[i] or always[i] or freq[i] <= 0:
            continue
        k = 0
        while k < alts.shape[1] and alts[i, k] >= 0:
            k += 1
        if k == 0:
            loss[i] = np.inf
            continue
        logsum_alt = math.log(total + freq[i] * (k - 1))   # the corpus grows by k-1 tokens per use
        logprob_alt = 0.0
        for j in range(k):
            logprob_alt += math.log(freq[alts[i, j]] + freq[i]) - logsum_alt
        loss[i] = freq[i] * (math.log(freq[i]) - math.log(total) - logprob_alt)
    return loss


def _words(text_or_iterator, split_digits, special_tokens):
    rx = regex.compile(WORD_SPLIT_DIGITS if split_digits else WORD)
    cut = regex.compile("|".join(map(regex.escape, special_tokens))) if special_tokens else None
    counts = collections.Counter()
    for chunk in text_chunks(text_or_iterator):
        for part in (cut.split(chunk) if cut else [chunk]):
            counts.update(rx.findall(part))
    return counts


# ------------------------------------------------------------------ the training steps
PRUNE_MARGIN = 1.1   # EM and pruning stop at 110% of the wanted pieces; the best-scoring are then kept
                     # (sentencepiece's trainer does the same, so the final choice has some slack)


def _check_args(vocab_size, character_coverage, max_piece_length, special_tokens):
    """-> the number of learned pieces wanted (vocab_size minus the reserved ones)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size: expected int, got {type(vocab_size).__name__}")
    reserved = 3 + len(special_tokens) + 256  # <unk> <s> </s>, specials, byte pieces
    if vocab_size <= reserved:
        raise ValueError(f"vocab_size: must be > 3 control pieces + {len(special_tokens)} special tokens "
                         f"+ 256 byte pieces = {reserved}, got {vocab_size}")
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"character_coverage: expected a value in (0, 1], got {character_coverage}")
    if not isinstance(max_piece_length, int) or max_piece_length < 1:
        raise ValueError(f"max_piece_length: expected a positive int, got {max_piece_length!r}")
    return vocab_size - reserved


def _required_chars(counts, character_coverage, desired, vocab_size):
    """Step 1: the most frequent characters that together cover character_coverage of the text."""
    char_freq = collections.Counter()
    for w, c in counts.items():
        for ch in w:
            char_freq[ch] += c
    total_chars, covered, required = sum(char_freq.values()), 0, []
    for ch, c in char_freq.most_common():
        if covered / total_chars >= character_coverage:
            break
        required.append(ch)
        covered += c
    if len(required) > desired:
        raise ValueError(f"vocab_size: {vocab_size} leaves {desired} learned pieces, fewer than the "
                         f"{len(required)} characters needed for character_coverage={character_coverage}")
    return required


class _Substrings:
    """Step 2: every substring of every word (up to max_piece_length characters, no unknown
    character inside), hashed: position p, length l -> h(p, l); equal hashes are one substring.
    Characters of all words are concatenated into `joined` (N characters, W words)."""

    def __init__(self, counts, required, max_piece_length):
        words = list(counts)
        self.n_words = len(words)
        self.word_len = np.fromiter(map(len, words), dtype=np.int64, count=len(words))       # (W,)
        self.word_freq = np.fromiter((counts[w] for w in words), dtype=np.float64, count=len(words))
        self.word_off = np.zeros(len(words) + 1, dtype=np.int64)                              # (W+1,)
        np.cumsum(self.word_len, out=self.word_off[1:])
        self.joined = "".join(words)
        cps = np.frombuffer(self.joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        self.word_of = np.repeat(np.arange(len(words), dtype=np.int64), self.word_len)        # (N,)
        req_set = set(required)
        self.unknown_char = np.fromiter((ch not in req_set for ch in self.joined), dtype=np.int64, count=len(cps))
        hashes, self.positions, self.lengths = self._hash_all(cps, max_piece_length)
        uniq, self.first, self.inverse = np.unique(hashes, return_index=True, return_inverse=True)
        self.n_unique = len(uniq)
        self.freq = np.bincount(self.inverse, weights=self.word_freq[self.word_of[self.positions]])  # (U,)
        self.length = self.lengths[self.first]                                                       # (U,)

    def _hash_all(self, cps, max_piece_length):
        room = self.word_off[self.word_of + 1] - np.arange(len(cps), dtype=np.int64)    # chars left in the word
        bad_prefix = np.concatenate([[0], np.cumsum(self.unknown_char)])                 # (N+1,)
        hashes, positions, lengths = [], [], []
        h = np.zeros(len(cps), dtype=np.uint64)
        for l in range(1, max_piece_length + 1):
            ok = room >= l                                                               # (N,)
            if not ok.any():
                break
            idx = np.nonzero(ok)[0]
            with np.errstate(over="ignore"):  # wrap-around is the hash's modulus 2**64
                h[idx] = h[idx] * _HASH_BASE + cps[idx + l - 1] + np.uint64(1)
            idx = idx[bad_prefix[idx + l] - bad_prefix[idx] == 0]  # no unknown characters inside
            hashes.append(h[idx].copy())
            positions.append(idx)
            lengths.append(np.full(len(idx), l, dtype=np.int64))
        return np.concatenate(hashes), np.concatenate(positions), np.concatenate(lengths)


class _Seeds:
    """The seed vocabulary: every single character + the most frequent longer substrings (seen at
    least twice, ranked by frequency x length). Piece i is substring seeds[i]; one occurrence of it
    (rep_word, rep_start, rep_len) is where its alternatives are searched."""

    def __init__(self, sub, seed_size, required):
        is_char = sub.length == 1
        multi = np.nonzero(~is_char & (sub.freq >= 2))[0]
        multi = multi[np.argsort(-(sub.freq[multi] * sub.length[multi]), kind="stable")][:seed_size]
        chars = np.nonzero(is_char)[0]
        self.seeds = np.concatenate([chars, multi])                                      # (P,)
        self.n = len(self.seeds)
        self.slot_of = np.full(sub.n_unique, -1, dtype=np.int64)
        self.slot_of[self.seeds] = np.arange(self.n)
        rep_pos = sub.positions[sub.first[self.seeds]]
        self.rep_word = sub.word_of[rep_pos]
        self.rep_start = rep_pos - sub.word_off[sub.word_of[rep_pos]]
        self.rep_len = sub.length[self.seeds]
        self.piece_str = [sub.joined[p:p + l] for p, l in zip(rep_pos.tolist(), self.rep_len.tolist())]
        req_set = set(required)
        self.always = np.zeros(self.n, dtype=np.bool_)                                   # required characters
        self.always[: len(chars)] = np.array([self.piece_str[i] in req_set for i in range(len(chars))], dtype=np.bool_)

    def initial_logp(self, sub):
        """log p of every piece proportional to frequency x length, plus the unknown slot (P+1,)."""
        score = np.log(sub.freq[self.seeds] * sub.length[self.seeds])
        logp = np.empty(self.n + 1, dtype=np.float64)                                    # (P+1,)
        logp[:self.n] = score - np.log(np.exp(score - score.max()).sum()) - score.max()
        return logp


class _Lattice:
    """Step 3: the lattice edges of every word, sorted by (word, end, start): edge k of word w is
    [e_start[k], e_end[k]) with piece e_piece[k]; the edges of word w are edge_off[w]..edge_off[w+1].
    An unknown character gets one edge with the unknown slot (piece number P)."""

    def __init__(self, sub, seeds):
        slot = seeds.slot_of[sub.inverse]
        keep = slot >= 0
        unk_pos = np.nonzero(sub.unknown_char)[0]
        e_pos = np.concatenate([sub.positions[keep], unk_pos])
        e_len = np.concatenate([sub.lengths[keep], np.ones(len(unk_pos), dtype=np.int64)])
        e_piece = np.concatenate([slot[keep], np.full(len(unk_pos), seeds.n, dtype=np.int64)])
        e_word = sub.word_of[e_pos]
        e_start = e_pos - sub.word_off[e_word]
        order = np.lexsort((e_start, e_start + e_len, e_word))
        self.n_words = sub.n_words
        self._set(e_word[order], e_start[order], (e_start + e_len)[order], e_piece[order])

    def _set(self, e_word, e_start, e_end, e_piece):
        self.e_word, self.e_start, self.e_end, self.e_piece = e_word, e_start, e_end, e_piece
        self.edge_off = np.searchsorted(e_word, np.arange(self.n_words + 1), side="left").astype(np.int64)

    def drop_dead(self, alive):
        """Remove the edges of dead pieces so later sweeps skip them."""
        live = alive[self.e_piece]
        self._set(self.e_word[live], self.e_start[live], self.e_end[live], self.e_piece[live])

    def edges(self):
        return self.edge_off, self.e_start, self.e_end, self.e_piece


def _em(lattice, sub, logp, alive, always, num_sub_iterations):
    """Step 3: EM sub-iterations (Kudo 2018 eqs. 3-4); updates logp and alive in place."""
    n = len(always)
    for _ in range(num_sub_iterations):
        logp[n] = logp[:n][alive[:n]].min() - UNK_PENALTY
        expected, _ = _e_step(*lattice.edges(), sub.word_len, sub.word_freq, logp, alive, n + 1)
        logp[:n] = _m_step(expected[:n], alive[:n], always)


def _prune(lattice, sub, seeds, logp, alive, target, shrinking_factor, max_piece_length):
    """Step 4: keep the max(target, shrinking_factor x alive) pieces whose removal would lose the
    most likelihood; updates alive and the lattice in place."""
    n = seeds.n
    logp[n] = logp[:n][alive[:n]].min() - UNK_PENALTY
    freq = _viterbi_counts(*lattice.edges(), sub.word_len, sub.word_freq, logp, alive, n + 1)[:n]
    alts = _alternatives(*lattice.edges(), seeds.rep_word, seeds.rep_start, seeds.rep_len, logp, alive,
                         max_piece_length)
    loss = _prune_loss(freq, alts, alive[:n], seeds.always)
    candidates = np.nonzero(alive[:n] & ~seeds.always)[0]
    n_alive = int(alive[:n].sum())
    keep_n = max(target, int((n_alive - seeds.always.sum()) * shrinking_factor))
    ranked = candidates[np.argsort(-loss[candidates], kind="stable")]
    alive[ranked[keep_n:]] = False
    lattice.drop_dead(alive)


def _final_pieces(seeds, logp, alive, desired, special_tokens):
    """The vocabulary: control, special and byte pieces, then the required characters and the
    best-scoring other pieces, highest log p first."""
    n, always = seeds.n, seeds.always
    others = np.nonzero(alive[:n] & ~always)[0]
    others = others[np.argsort(-logp[others], kind="stable")][: desired - int(always.sum())]
    chosen = np.concatenate([np.nonzero(always)[0], others])
    chosen = chosen[np.argsort(-logp[chosen], kind="stable")]
    floor = logp[others].min() if len(others) else 0.0
    pieces = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    pieces += [(t, 0.0, CONTROL) for t in special_tokens]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    pieces += [(seeds.piece_str[i], float(logp[i]) if np.isfinite(logp[i]) else float(floor) - 1.0, NORMAL)
               for i in chosen.tolist()]
    return pieces


def train(cls, text_or_iterator, vocab_size, split_digits=False, character_coverage=0.9995, max_piece_length=16,
          special_tokens=None, progress=None, seed_size=50_000, shrinking_factor=0.75, num_sub_iterations=2):
    """A UnigramTokenizer (`cls`) of vocab_size pieces trained on the text by steps 1-4 of the module
    docstring. progress(done, total), when given, is called after each EM round."""
    special_tokens = list(special_tokens or [])
    desired = _check_args(vocab_size, character_coverage, max_piece_length, special_tokens)
    counts = _words(text_or_iterator, split_digits, special_tokens)
    if not counts:
        raise ValueError("text_or_iterator: the training text is empty")
    required = _required_chars(counts, character_coverage, desired, vocab_size)
    sub = _Substrings(counts, required, max_piece_length)
    seeds = _Seeds(sub, seed_size, required)
    lattice = _Lattice(sub, seeds)
    logp = seeds.initial_logp(sub)                                                       # (P+1,)
    alive = np.ones(seeds.n + 1, dtype=np.bool_)
    target = max(desired, int(desired * PRUNE_MARGIN)) - len(required)
    while True:
        _em(lattice, sub, logp, alive, seeds.always, num_sub_iterations)
        n_alive = int(alive[:seeds.n].sum())
        if progress:
            progress(min(desired, max(0, desired - (n_alive - desired))), desired)
        if n_alive - int(seeds.always.sum()) <= target:
            break
        _prune(lattice, sub, seeds, logp, alive, target, shrinking_factor, max_piece_length)
    pieces = _final_pieces(seeds, logp, alive, desired, special_tokens)
    if progress:
        progress(desired, desired)
    return cls(pieces, model_type="unigram", byte_fallback=True, special_tokens=special_tokens)
