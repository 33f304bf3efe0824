"""SentencePiece-style BPE (Kudo & Richardson 2018, the "bpe" model type), as Llama-2 and Mistral
vocabularies use it: text, not bytes, is merged, spaces are the visible "▁" (U+2581), and a
character no piece covers falls back to its UTF-8 bytes, each a "<0xXX>" token.

Merging starts from the characters of the text and repeatedly joins the adjacent pair with the
best priority, leftmost on ties, until no adjacent pair may merge. Two vocabularies define priority:
- GGUF "llama" files (llama.cpp's llm_tokenizer_spm): a pair may merge when its concatenation is
  a token, and the pair whose token has the highest score goes first;
- Hugging Face tokenizer.json (a BPE model with byte_fallback): a pair may merge when it is in the
  merge list, the lowest rank first.
Unlike bpe.py (byte-level: every byte is a token, pieces come from a regex), there is no
pre-tokenizer: the whole escaped text is one sequence.
"""
import heapq

SPACE = "\u2581"  # "▁": how SentencePiece writes a space inside pieces


def byte_token(b):
    """The text of byte b's fallback token: "<0x0A>" for b"\\n"."""
    return f"<0x{b:02X}>"


class SentencePieceBPE:
    """pieces: {piece text: id} of every token a merge may produce; byte_ids: (256,) the id of each
    byte's fallback token (-1 where the vocabulary has none); either scores {id: float} (GGUF:
    higher merges first) or ranks {(left text, right text): rank} (tokenizer.json: lower first)."""

    def __init__(self, pieces, byte_ids, scores=None, ranks=None, unk_id=None):
        if (scores is None) == (ranks is None):
            raise ValueError("scores/ranks: give exactly one of them")
        if len(byte_ids) != 256:
            raise ValueError(f"byte_ids: expected 256 ids, got {len(byte_ids)}")
        self.pieces = dict(pieces)
        self.byte_ids = [int(i) for i in byte_ids]
        self.scores = None if scores is None else dict(scores)
        self.ranks = None if ranks is None else dict(ranks)
        self.unk_id = unk_id

    def _priority(self, left, right):
        """Sort key of merging left+right (smaller first), or None when the pair does not merge."""
        if self.scores is not None:
            token = self.pieces.get(left + right)
            return None if token is None else -self.scores.get(token, 0.0)
        return self.ranks.get((left, right))

    def encode(self, text):
        """Token ids of text whose spaces are already "▁" (see escape)."""
        sym = list(text)                                   # the text of each symbol; "" once merged away
        nxt = list(range(1, len(sym))) + [-1]
        prv = list(range(-1, len(sym) - 1))
        heap = []

        def push(i, j):
            if i >= 0 and j >= 0:
                p = self._priority(sym[i], sym[j])
                if p is not None:
                    heapq.heappush(heap, (p, i, sym[i] + sym[j]))

        for i in range(len(sym) - 1):
            push(i, i + 1)
        while heap:
            _, i, merged = heapq.heappop(heap)
            j = nxt[i]
            if j < 0 or not sym[i] or sym[i] + sym[j] != merged:
                continue                                   # a stale pair: one side merged since
            sym[i], sym[j] = merged, ""
            nxt[i] = nxt[j]
            if nxt[j] >= 0:
                prv[nxt[j]] = i
            push(prv[i], i)
            push(i, nxt[i])
        out, i = [], 0 if sym else -1
        while i >= 0:
            out.extend(self._resegment(sym[i]))
            i = nxt[i]
        return out

    def _resegment(self, symbol):
        """A final symbol's ids: itself if it is a piece, else its bytes' fallback tokens."""
        token = self.pieces.get(symbol)
        if token is not None:
            return [token]
        ids = [self.byte_ids[b] for b in symbol.encode("utf-8")]
        if min(ids) < 0:
            if self.unk_id is None:
                raise ValueError(f"text: {symbol!r} is neither a token nor covered by byte fallback")
            return [self.unk_id]
        return ids


def escape(text, add_space_prefix):
    """SentencePiece's normalisation of ordinary text: an optional leading space, spaces -> "▁"."""
    return ((" " if add_space_prefix else "") + text).replace(" ", SPACE)
