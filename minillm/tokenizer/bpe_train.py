"""Learning BPE merges from word counts (Sennrich et al. 2016, "Neural Machine Translation of Rare
Words with Subword Units", Algorithm 1), three ways that must agree merge for merge:

- `train_reference`: the textbook loop -- recount every adjacent pair of every word (get_stats),
  take the most frequent, rewrite every word (merge_vocab). O(merges x corpus); the spec.
- `train_incremental`: the same merges, but pair counts and the positions of every pair are kept
  up to date as merges happen, and a max-heap picks the next pair. A merge only touches the words
  that contain its pair, so the whole run costs about O(corpus + merges x log pairs).
- csrc/bpe.c `bpe_trainer_*`: `train_incremental` in C, used when the extension is built.

Tie-break (all three): the highest count wins; among equal counts, the smallest pair (a, b)
compared as token ids. Merging inside a word goes left to right, so "aaa" with (a, a) gives
[aa, a].

Input: `words`, a dict {tuple of symbol ids: count}; the first new token id is `next_id`.
Output: a list of (a, b, count) for each merge; merge i creates id next_id + i.
"""
import heapq


def _get_stats(words):
    """Counts of adjacent pairs over all words, weighted by word count."""
    stats = {}
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            stats[pair] = stats.get(pair, 0) + count
    return stats


def _merge_word(word, pair, new_id):
    """Replace every occurrence of `pair` in `word`, left to right, by `new_id`."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_reference(words, n_merges, next_id=256, progress=None):
    """Recount all pairs after every merge (the textbook get_stats / merge_vocab loop)."""
    words = dict(words)
    merges = []
    for k in range(n_merges):
        stats = _get_stats(words)
        if not stats:
            break  # every word is a single token: nothing left to merge
        pair = min(stats, key=lambda p: (-stats[p], p))  # highest count, then smallest (a, b)
        new_id = next_id + k
        merged = {}
        for word, count in words.items():
            w = _merge_word(word, pair, new_id) if len(word) > 1 else word
            merged[w] = merged.get(w, 0) + count
        words = merged
        merges.append((pair[0], pair[1], stats[pair]))
        if progress:
            progress(k + 1, n_merges)
    return merges


def train_incremental(words, n_merges, next_id=256, progress=None):
    """Same merges as train_reference, with pair counts/positions updated in place and a heap.

    Every symbol of every word gets a global position with prev/next links (a linked list per
    word), so merging a pair at position i is O(1): the right symbol is unlinked. `where[pair]` lists
    the left positions where pair occurred (entries go stale and are checked when used). The heap
    holds (-count, a, b); an entry whose count no longer matches is re-queued with the true count
    (counts of existing pairs only fall, so heap entries are upper bounds and the top valid entry
    is the true maximum).
    """
    sym, nxt, prv, weight = [], [], [], []
    for word, count in words.items():
        start = len(sym)
        for j, s in enumerate(word):
            sym.append(s)
            weight.append(count)
            prv.append(start + j - 1 if j > 0 else -1)
            nxt.append(start + j + 1 if j + 1 < len(word) else -1)
    counts, where = {}, {}
    for i in range(len(sym)):
        if nxt[i] >= 0:
            pair = (sym[i], sym[nxt[i]])
            counts[pair] = counts.get(pair, 0) + weight[i]
            where.setdefault(pair, []).append(i)
    heap = [(-c, a, b) for (a, b), c in counts.items() if c > 0]
    heapq.heapify(heap)

    def add(pair, w, pos, touched):
        counts[pair] = counts.get(pair, 0) + w
        where.setdefault(pair, []).append(pos)
        touched.append(pair)

    merges = []
    while len(merges) < n_merges and heap:
        neg, a, b = heapq.heappop(heap)
        c = counts.get((a, b), 0)
        if c <= 0:
            continue
        if c != -neg:  # stale upper bound: re-queue with the true count
            heapq.heappush(heap, (-c, a, b))
            continue
        z = next_id + len(merges)
        touched = []
        for i in where.pop((a, b)):
            j = nxt[i]
            if sym[i] != a or j < 0 or sym[j] != b:
                continue  # stale: this occurrence was consumed by an earlier merge
            w, left, right = weight[i], prv[i], nxt[j]
            if left >= 0:
                counts[(sym[left], a)] -= w
                add((sym[left], z), w, left, touched)
            if right >= 0:
                counts[(b, sym[right])] -= w
                add((z, sym[right]), w, i, touched)
            sym[i], sym[j] = z, -1
            nxt[i] = right
            if right >= 0:
                prv[right] = i
        counts[(a, b)] = 0
        for pair in dict.fromkeys(touched):  # new pairs (they contain z): queue each once
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], pair[0], pair[1]))
        merges.append((a, b, c))
        if progress:
            progress(len(merges), n_merges)
    return merges
